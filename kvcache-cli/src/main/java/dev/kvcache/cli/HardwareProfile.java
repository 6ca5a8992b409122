package dev.kvcache.cli;

import java.util.List;
import java.util.Locale;

/**
 * One accelerator's numbers for the {@link StepTimeModel}: memory bandwidth, dense matrix
 * throughput in BF16 and FP8, the host link (PCIe) and the network.
 *
 * <p>Presets are NVIDIA's datasheet figures, dense (no 2:4 sparsity), per GPU:
 * <ul>
 *   <li>A100-80GB SXM: 2,039 GB/s HBM2e, 312 TFLOPS BF16, no FP8 tensor cores (FP8 weights run at
 *       the BF16 rate), PCIe Gen4 x16 (32 GB/s per direction), 200 Gb/s HDR InfiniBand (25 GB/s);
 *       NVIDIA A100 Tensor Core GPU datasheet (2021).</li>
 *   <li>H100-SXM: 3,350 GB/s HBM3, 989 TFLOPS BF16, 1,979 TFLOPS FP8, PCIe Gen5 x16 (64 GB/s),
 *       400 Gb/s NDR (50 GB/s); NVIDIA H100 Tensor Core GPU datasheet (2023).</li>
 *   <li>H200 (SXM): 4,800 GB/s HBM3e, 141 GB, the H100's compute (989 / 1,979 TFLOPS), PCIe Gen5
 *       x16, 400 Gb/s NDR; NVIDIA H200 Tensor Core GPU datasheet (2024).</li>
 *   <li>L40S: 864 GB/s GDDR6, 48 GB, 362 TFLOPS BF16 and 733 TFLOPS FP8 dense (the datasheet's
 *       733 / 1,466 are with sparsity), PCIe Gen4 x16, 200 Gb/s; NVIDIA L40S datasheet (2023).</li>
 * </ul>
 * Every number can be overridden on the command line ({@code --hbm}, {@code --tflops-bf16},
 * {@code --tflops-fp8}, {@code --host-link}, {@code --network}). Bandwidths are GB/s = 10^9 bytes/s.
 *
 * @param name         the preset's name (or "custom")
 * @param memoryGB     device memory, GB (10^9 bytes)
 * @param hbmGBps      device memory bandwidth, GB/s
 * @param bf16Tflops   dense BF16 tensor throughput, TFLOPS
 * @param fp8Tflops    dense FP8 tensor throughput, TFLOPS
 * @param hostLinkGBps host link (PCIe) per direction, GB/s
 * @param networkGBps  network per GPU, GB/s
 */
record HardwareProfile(String name, double memoryGB, double hbmGBps, double bf16Tflops, double fp8Tflops,
                       double hostLinkGBps, double networkGBps) {

    HardwareProfile {
        positive("memory", memoryGB);
        positive("--hbm", hbmGBps);
        positive("--tflops-bf16", bf16Tflops);
        positive("--tflops-fp8", fp8Tflops);
        positive("--host-link", hostLinkGBps);
        positive("--network", networkGBps);
    }

    static final List<HardwareProfile> PRESETS = List.of(
            new HardwareProfile("A100-80GB", 80, 2039, 312, 312, 32, 25),
            new HardwareProfile("H100-SXM", 80, 3350, 989, 1979, 64, 50),
            new HardwareProfile("H200", 141, 4800, 989, 1979, 64, 50),
            new HardwareProfile("L40S", 48, 864, 362, 733, 32, 25));

    /** The preset of that name (case, dashes and spaces ignored); IllegalArgumentException listing them otherwise. */
    static HardwareProfile byName(String name) {
        String key = normalize(name);
        for (HardwareProfile p : PRESETS) {
            if (normalize(p.name()).equals(key)) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown GPU '" + name + "'; known: "
                + PRESETS.stream().map(HardwareProfile::name).toList());
    }

    /** This profile with the non-null overrides applied. */
    HardwareProfile with(Double hbm, Double bf16, Double fp8, Double hostLink, Double network) {
        boolean any = hbm != null || bf16 != null || fp8 != null || hostLink != null || network != null;
        return new HardwareProfile(any ? name + " (overridden)" : name, memoryGB,
                hbm != null ? hbm : hbmGBps, bf16 != null ? bf16 : bf16Tflops, fp8 != null ? fp8 : fp8Tflops,
                hostLink != null ? hostLink : hostLinkGBps, network != null ? network : networkGBps);
    }

    String describe() {
        return String.format(Locale.ROOT, "%s: %.0f GB, %,.0f GB/s memory, %,.0f TFLOPS BF16 / %,.0f FP8 dense, "
                + "host link %s GB/s, network %s GB/s", name, memoryGB, hbmGBps, bf16Tflops, fp8Tflops,
                num(hostLinkGBps), num(networkGBps));
    }

    static String num(double g) {
        return g == Math.rint(g) && Math.abs(g) < 1e15 ? String.format(Locale.ROOT, "%.0f", g) : String.valueOf(g);
    }

    private static void positive(String what, double v) {
        if (!(v > 0) || !Double.isFinite(v)) {
            throw new IllegalArgumentException(what + " must be a finite number > 0, got " + v);
        }
    }

    private static String normalize(String s) {
        return s == null ? "" : s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]", "");
    }
}
