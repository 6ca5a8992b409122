/*
 * An independent float32 llama2.c-checkpoint greedy decoder, written from the algorithm description
 * (not from run.c) to cross-check the Java oracle: CrossCheckWithCTest compiles it with gcc -O0
 * and compares token ids. Usage: llama2_greedy <checkpoint> <steps>; prints the ids generated from
 * BOS (1) on one line, stopping at BOS. Minimal error handling: test input only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
static int D,HD,L,NH,NKV,V,S;
static float *emb,*ra,*wq,*wk,*wv,*wo,*rf,*w1,*w2,*w3,*rfin;
static void mm(float*o,const float*x,const float*w,int n,int d){for(int i=0;i<d;i++){float a=0.0f;for(int j=0;j<n;j++)a+=w[(long)i*n+j]*x[j];o[i]=a;}}
static void rms(float*o,const float*x,const float*w,int n){float s=0.0f;for(int j=0;j<n;j++)s+=x[j]*x[j];s/=n;s+=1e-5f;s=1.0f/sqrtf(s);for(int j=0;j<n;j++)o[j]=w[j]*(s*x[j]);}
int main(int argc,char**argv){
  FILE*f=fopen(argv[1],"rb"); int h[7]; if(fread(h,4,7,f)!=7)return 1;
  D=h[0];HD=h[1];L=h[2];NH=h[3];NKV=h[4];V=abs(h[5]);S=h[6]; int steps=atoi(argv[2]);
  fseek(f,0,SEEK_END); long sz=ftell(f)-28; fseek(f,28,SEEK_SET); float*w=malloc(sz); if(fread(w,1,sz,f)!=(size_t)sz)return 1;
  int hs=D/NH, kvd=NKV*hs, mul=NH/NKV; float*p=w;
  emb=p;p+=V*D; ra=p;p+=L*D; wq=p;p+=L*D*D; wk=p;p+=L*D*kvd; wv=p;p+=L*D*kvd; wo=p;p+=L*D*D; rf=p;p+=L*D; w1=p;p+=L*D*HD; w2=p;p+=L*D*HD; w3=p;p+=L*D*HD; rfin=p;
  float *kc=calloc((long)L*S*kvd,4),*vc=calloc((long)L*S*kvd,4),*x=malloc(D*4),*xb=malloc(D*4),*xb2=malloc(D*4),*q=malloc(D*4),*hb=malloc(HD*4),*hb2=malloc(HD*4),*att=malloc(S*4),*lg=malloc(V*4);
  int tok=1;
  for(int pos=0;pos<steps;pos++){
    memcpy(x,emb+(long)tok*D,D*4);
    for(int l=0;l<L;l++){
      rms(xb,x,ra+l*D,D); float*k=kc+((long)l*S+pos)*kvd,*v=vc+((long)l*S+pos)*kvd;
      mm(q,xb,wq+(long)l*D*D,D,D); mm(k,xb,wk+(long)l*D*kvd,D,kvd); mm(v,xb,wv+(long)l*D*kvd,D,kvd);
      for(int i=0;i<D;i+=2){float fr=1.0f/powf(10000.0f,(i%hs)/(float)hs),a=pos*fr,c=cosf(a),s=sinf(a);
        float q0=q[i],q1=q[i+1];q[i]=q0*c-q1*s;q[i+1]=q0*s+q1*c;
        if(i<kvd){float k0=k[i],k1=k[i+1];k[i]=k0*c-k1*s;k[i+1]=k0*s+k1*c;}}
      for(int hh=0;hh<NH;hh++){float*qh=q+hh*hs;int g=hh/mul;float mx=-INFINITY;
        for(int t=0;t<=pos;t++){float*kt=kc+((long)l*S+t)*kvd+g*hs;float sc=0.0f;for(int i=0;i<hs;i++)sc+=qh[i]*kt[i];sc/=sqrtf(hs);att[t]=sc;if(sc>mx)mx=sc;}
        float sum=0.0f;for(int t=0;t<=pos;t++){att[t]=expf(att[t]-mx);sum+=att[t];}for(int t=0;t<=pos;t++)att[t]/=sum;
        float*o=xb+hh*hs;memset(o,0,hs*4);for(int t=0;t<=pos;t++){float*vt=vc+((long)l*S+t)*kvd+g*hs;for(int i=0;i<hs;i++)o[i]+=att[t]*vt[i];}}
      mm(xb2,xb,wo+(long)l*D*D,D,D); for(int i=0;i<D;i++)x[i]+=xb2[i];
      rms(xb,x,rf+l*D,D); mm(hb,xb,w1+(long)l*D*HD,D,HD); mm(hb2,xb,w3+(long)l*D*HD,D,HD);
      for(int i=0;i<HD;i++){float a=hb[i];a*=1.0f/(1.0f+expf(-a));a*=hb2[i];hb[i]=a;}
      mm(xb,hb,w2+(long)l*D*HD,HD,D); for(int i=0;i<D;i++)x[i]+=xb[i];
    }
    rms(x,x,rfin,D); mm(lg,x,emb,D,V);
    int b=0;for(int i=1;i<V;i++)if(lg[i]>lg[b])b=i;
    if(b==1)break; printf(pos?" %d":"%d",b); tok=b;
  }
  printf("\n"); return 0;}
