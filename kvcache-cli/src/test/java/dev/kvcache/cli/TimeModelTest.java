package dev.kvcache.cli;

import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The step-time model, the hardware presets, the catalog's parameter counts and config.json. */
class TimeModelTest {

    private static final ModelCatalog.Model LLAMA3_8B = ModelCatalog.byName("Llama-3-8B");
    private static final StepTimeModel H100 = StepTimeModel.of(HardwareProfile.byName("H100-SXM"), 1, LLAMA3_8B, false);

    @Test
    void llama3_8b_bf16_on_an_h100_decodes_at_batch_1_and_1k_context_in_5_to_8_ms() {
        KvLayout l = LLAMA3_8B.layout(16, KvFormats.BF16);
        double itl = H100.iterationSeconds(1, 1024L * l.bytesPerToken(), 1024, 0);
        assertTrue(itl >= 0.005 && itl <= 0.008, "ITL " + itl * 1000 + " ms");
    }

    @Test
    void decode_is_memory_bound_and_prefill_compute_bound() {
        KvLayout l = LLAMA3_8B.layout(16, KvFormats.BF16);
        double one = H100.iterationSeconds(1, 1024L * l.bytesPerToken(), 1024, 0);
        double eighty = H100.iterationSeconds(80, 80 * 4096L * l.bytesPerToken(), 80 * 4096L, 0);
        // 80 requests' KV at 4k tokens (40 GiB) is read on top of the 16 GB of weights
        double expected = (H100.weightBytes() + 80 * 4096.0 * l.bytesPerToken()) / (3350e9 * 0.8);
        assertEquals(expected, eighty, expected * 1e-9);
        assertTrue(eighty > 2 * one);
        // a 32k prefill: FLOPs = 2 x params x tokens + attention, at half of 989 TFLOPS
        double flops = 2.0 * LLAMA3_8B.activeParams() * 32768 + 4.0 * 32 * 32 * 128 * (32768.0 * 32769 / 2);
        assertEquals(flops / (989e12 * 0.5), H100.prefillSeconds(0, 32768), 1e-9);
        assertTrue(H100.prefillSeconds(0, 32768) > 32 * H100.prefillSeconds(0, 1024));
        // FP8 KV halves the KV read; FP8 weights halve the weight read
        StepTimeModel fp8 = StepTimeModel.of(HardwareProfile.byName("H100-SXM"), 1, LLAMA3_8B, true);
        assertEquals(H100.weightBytes() / 2, fp8.weightBytes());
        // two GPUs in tensor parallel: twice the bandwidth
        StepTimeModel tp2 = StepTimeModel.of(HardwareProfile.byName("H100-SXM"), 2, LLAMA3_8B, false);
        assertEquals(eighty / 2, tp2.iterationSeconds(80, 80 * 4096L * l.bytesPerToken(), 80 * 4096L, 0), 1e-12);
    }

    @Test
    void load_beats_recompute_from_the_length_a_scan_finds() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (int i = 0; i < 20; i++) {
            long bpt = 1 + rnd.nextLong(1 << 20);
            double link = 0.05 + rnd.nextDouble() * 4;
            long max = 1 << 18;
            long got = H100.loadBeatsRecomputeFrom(bpt, link, max);
            long ref = -1;
            for (long t = 1; t <= max; t++) { // the reference: the first length where loading is faster
                if (t * (double) bpt / (link * 1e9) < H100.recomputeSeconds(0, t)) {
                    ref = t;
                    break;
                }
            }
            assertEquals(ref, got, "bytes/token " + bpt + ", link " + link);
        }
        // PCIe Gen5: loading Llama-3-8B's KV (128 KiB/token) beats its 33 us/token recompute from the first token
        assertEquals(1, H100.loadBeatsRecomputeFrom(131072, 64, 1 << 20));
    }

    @Test
    void plan_prints_the_load_vs_recompute_line_from_the_same_model() {
        CliRun r = CliRun.of("plan", "-m", "Llama-3-8B");
        assertEquals(0, r.exitCode(), r.err());
        long from = H100.loadBeatsRecomputeFrom(131072, 1.25, Simulator.MAX_TOKENS);
        String tenGbe = r.line("10 GbE");
        assertTrue(tenGbe.contains(Sizes.count(from) + " tokens"), tenGbe + " vs " + from);
        assertTrue(r.line("host link (PCIe)").endsWith("the first token"), r.out());
        assertTrue(r.out().contains("over a link above 4.0 GB/s"), r.out());
    }

    @Test
    void catalog_parameter_counts_come_from_the_config_sizes() {
        // published totals: Llama-3-8B 8.03B, Llama-2-7B 6.74B, Qwen2.5-72B 72.7B, Mixtral 46.7B (12.9B active)
        assertEquals(8.03e9, LLAMA3_8B.totalParams(), 0.01e9);
        assertEquals(6.74e9, ModelCatalog.byName("Llama-2-7B").totalParams(), 0.01e9);
        assertEquals(72.7e9, ModelCatalog.byName("Qwen2.5-72B").totalParams(), 0.1e9);
        ModelCatalog.Model mixtral = ModelCatalog.byName("Mixtral-8x7B");
        assertEquals(46.7e9, mixtral.totalParams(), 0.1e9);
        assertEquals(12.9e9, mixtral.activeParams(), 0.1e9);
    }

    @Test
    void a_config_json_gives_the_same_model_as_the_catalog(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("config.json");
        Files.writeString(f, """
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
                 "max_position_embeddings": 8192, "num_attention_heads": 32, "num_hidden_layers": 32,
                 "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
                 "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256}
                """);
        ModelCatalog.Model m = ModelCatalog.fromConfigJson(f);
        assertEquals(LLAMA3_8B.layout(16, KvFormats.F16), m.layout(16, KvFormats.F16));
        assertEquals(LLAMA3_8B.totalParams(), m.totalParams());
        assertEquals(8192, m.maxContext());
        CliRun plan = CliRun.of("plan", "--config", f.toString(), "--context", "1000");
        assertEquals(0, plan.exitCode(), plan.err());
        assertTrue(plan.line("model").contains("32 layers x 8 KV heads x 128 head dim"), plan.out());
        // head_dim given explicitly wins over hidden_size / heads
        Files.writeString(f, "{\"hidden_size\": 2048, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"head_dim\": 64,"
                + " \"num_hidden_layers\": 4, \"max_position_embeddings\": 4096}");
        assertEquals(64, ModelCatalog.fromConfigJson(f).headDim());
    }

    @Test
    void a_bad_config_json_is_one_line_exit_2(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("config.json");
        String[][] cases = {
                {"{\"hidden_size\": 4096", "not a JSON object"},
                {"{\"hidden_size\": 4096, \"num_attention_heads\": 32, \"max_position_embeddings\": 8}", "missing 'num_hidden_layers'"},
                {"{\"hidden_size\": 4096, \"num_attention_heads\": 0, \"num_hidden_layers\": 2, \"max_position_embeddings\": 8}",
                        "'num_attention_heads' must be a positive integer"},
                {"{\"hidden_size\": 4095, \"num_attention_heads\": 32, \"num_hidden_layers\": 2, \"max_position_embeddings\": 8}",
                        "not a multiple of num_attention_heads"},
                {"[1, 2]", "not a JSON object"},
        };
        for (String[] c : cases) {
            Files.writeString(f, c[0]);
            for (String cmd : new String[] {"plan", "simulate"}) {
                CliRun r = CliRun.of(cmd, "--config", f.toString());
                assertEquals(2, r.exitCode(), c[0] + ": " + r.err());
                assertEquals(1, r.err().strip().lines().count(), r.err());
                assertTrue(r.err().contains(c[1]) && r.err().contains(f.toString()), r.err());
            }
        }
        CliRun missing = CliRun.of("plan", "--config", dir.resolve("nope.json").toString());
        assertEquals(2, missing.exitCode());
        assertTrue(missing.err().contains("no such file"), missing.err());
        CliRun both = CliRun.of("plan", "--config", f.toString(), "--model", "Llama-3-8B");
        assertEquals(2, both.exitCode());
    }

    @Test
    void presets_and_overrides() {
        HardwareProfile h200 = HardwareProfile.byName("h200");
        assertEquals(4800, h200.hbmGBps());
        HardwareProfile o = h200.with(4000.0, null, null, 32.0, null);
        assertEquals(4000, o.hbmGBps());
        assertEquals(32, o.hostLinkGBps());
        assertEquals(h200.bf16Tflops(), o.bf16Tflops());
        assertTrue(o.name().contains("overridden"));
        assertThrows(IllegalArgumentException.class, () -> HardwareProfile.byName("TPUv9"));
        CliRun r = CliRun.of("simulate", "--gpu", "TPUv9");
        assertEquals(2, r.exitCode());
        assertTrue(r.err().contains("unknown GPU 'TPUv9'") && r.err().contains("L40S"), r.err());
        CliRun bad = CliRun.of("simulate", "--hbm", "-3");
        assertEquals(2, bad.exitCode());
        assertTrue(bad.err().startsWith("kvcache simulate: --hbm"), bad.err());
        assertEquals(String.format(Locale.ROOT, "%.2fB", 8.03), StepTimeModel.billions(8_030_000_000L));
    }
}
