# Independent numpy float32 greedy decoder for llama2.c v0 checkpoints (uses the stored freq_cis tables).
# Usage: python3 np_greedy.py <checkpoint> <steps>; prints the ids generated from BOS. Cross-check only.
import numpy as np, struct, sys
b=open(sys.argv[1],'rb').read()
dim,hid,L,H,KV,V,S=struct.unpack('<7i',b[:28])
f=np.frombuffer(b[28:],dtype='<f4'); o=0
hs=dim//H; kvd=KV*hs
def t(*shape):
    global o; n=int(np.prod(shape)); a=f[o:o+n].reshape(shape); o+=n; return a
emb=t(V,dim); ra=t(L,dim); wq=t(L,dim,dim); wk=t(L,kvd,dim); wv=t(L,kvd,dim); wo=t(L,dim,dim)
rf=t(L,dim); w1=t(L,hid,dim); w2=t(L,dim,hid); w3=t(L,hid,dim); rfin=t(dim); fcr=t(S,hs//2); fci=t(S,hs//2)
def rms(x,w): return w*(x/np.sqrt(np.mean(x*x)+np.float32(1e-5)))
kc=np.zeros((L,S,kvd),np.float32); vc=np.zeros((L,S,kvd),np.float32)
def rope(v,pos):
    v=v.reshape(-1,hs//2,2).copy(); a=v[...,0].copy(); c=v[...,1].copy()
    cr=fcr[pos]; ci=fci[pos]
    v[...,0]=a*cr-c*ci; v[...,1]=a*ci+c*cr; return v.reshape(-1)
def fwd(tok,pos):
    x=emb[tok].copy()
    for l in range(L):
        xb=rms(x,ra[l]); q=rope(wq[l]@xb,pos); k=rope(wk[l]@xb,pos); v=wv[l]@xb
        kc[l,pos]=k; vc[l,pos]=v
        out=np.zeros(dim,np.float32)
        for h in range(H):
            g=h//(H//KV)
            sc=kc[l,:pos+1,g*hs:(g+1)*hs]@q[h*hs:(h+1)*hs]/np.sqrt(np.float32(hs))
            sc=np.exp(sc-sc.max()); sc/=sc.sum()
            out[h*hs:(h+1)*hs]=sc@vc[l,:pos+1,g*hs:(g+1)*hs]
        x=x+wo[l]@out
        xb=rms(x,rf[l]); a=w1[l]@xb; a=a/(1+np.exp(-a)); x=x+w2[l]@(a*(w3[l]@xb))
    return emb@rms(x,rfin)
tok=1; out=[]
for pos in range(int(sys.argv[2])):
    n=int(np.argmax(fwd(tok,pos)))
    if n==1: break
    out.append(n); tok=n
print(' '.join(map(str,out)))
