/**
 * Quantizers and fused slice kernels for the KV formats of {@link dev.kvcache.KvFormats}.
 *
 * <p>Entry point: {@link dev.kvcache.quant.Quantizers}. Byte layouts of one slice (t tokens of one
 * head, d values each; all multi-byte fields little-endian; sizes exactly those of KvFormats):
 * <ul>
 *   <li>F32 / F16 / BF16: row-major values; F16 and BF16 round to nearest even and saturate.</li>
 *   <li>Q8_0 / Q4_0: per row, d/32 llama.cpp {@code block_q8_0} / {@code block_q4_0}, byte-identical
 *       to ggml's reference quantizers.</li>
 *   <li>FP8_E4M3 / FP8_E5M2: bytes [0,4) the slice's float32 scale, then t*d FP8 codes row-major.</li>
 *   <li>KIVI keys: d fp16 scales, d fp16 minimums, then per channel ceil(t*b/8) bytes of codes
 *       (token i at bits [i*b, i*b+b)). KIVI values: per row, d/32 groups of
 *       [fp16 scale][fp16 min][4b bytes of codes].</li>
 * </ul>
 * {@link dev.kvcache.quant.HadamardRotation} rotates keys and queries before quantization;
 * {@link dev.kvcache.quant.AccuracyReport} prints the accuracy table.
 */
package dev.kvcache.quant;
