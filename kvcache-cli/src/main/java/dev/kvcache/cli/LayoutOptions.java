package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.KvLayout;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Option;

/**
 * The model-shape options shared by {@code plan} and {@code simulate}: a catalog model, or an
 * explicit {@code --layers/--kv-heads/--head-dim} (which also override single fields of a catalog
 * model), plus the block size and the base KV format.
 */
final class LayoutOptions {

    @Option(names = {"-m", "--model"}, paramLabel = "NAME",
            description = "catalog model (see 'kvcache plan --list'); default: Llama-2-7B for plan, Qwen2.5-32B for simulate, unless --layers, --kv-heads and --head-dim are all given")
    String model;

    @Option(names = "--config", paramLabel = "config.json",
            description = "a Hugging Face config.json: layers, heads, head size, max context and the weights' sizes of any model")
    java.nio.file.Path config;

    @Option(names = "--layers", paramLabel = "N", description = "transformer layers")
    Integer layers;

    @Option(names = "--kv-heads", paramLabel = "N", description = "key/value heads per layer")
    Integer kvHeads;

    @Option(names = "--head-dim", paramLabel = "N", description = "values per head")
    Integer headDim;

    @Option(names = "--max-context", paramLabel = "TOKENS",
            description = "the model's longest context (default: the catalog's max_position_embeddings, else 32768)")
    Integer maxContext;

    @Option(names = "--block-tokens", paramLabel = "N", defaultValue = "16",
            description = "tokens per KV block (default: ${DEFAULT-VALUE})")
    int blockTokens;

    @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "F16", converter = FormatConverter.class,
            description = "base KV format: F32, F16, BF16, FP8_E4M3, FP8_E5M2, Q8_0, Q4_0, KIVI_4, KIVI_2 (default: ${DEFAULT-VALUE})")
    KvFormat format;

    /**
     * What the options describe: a display name, the layout in the base format, the longest
     * context, and the model's weights ({@code model}; for {@code --layers/--kv-heads/--head-dim}
     * without a catalog model an estimate, {@code estimated} true: multi-head attention with
     * hidden = kvHeads x headDim, a gated MLP of 8/3 hidden, 32,000-token vocabulary).
     */
    record Resolved(String name, String source, KvLayout layout, int maxContext, int queryHeads,
                    ModelCatalog.Model model, boolean estimated) {
    }

    Resolved resolve(String defaultModel) {
        ModelCatalog.Model m = null;
        boolean custom = layers != null && kvHeads != null && headDim != null;
        if (config != null && model != null) {
            throw new IllegalArgumentException("--config and --model both name a model; give one");
        }
        if (config != null) {
            m = ModelCatalog.fromConfigJson(config);
        } else if (model != null || !custom) {
            m = ModelCatalog.byName(model != null ? model : defaultModel);
        }
        int l = layers != null ? layers : m.layers();
        int h = kvHeads != null ? kvHeads : m.kvHeads();
        int d = headDim != null ? headDim : m.headDim();
        int ctx = maxContext != null ? maxContext : m != null ? m.maxContext() : 32768;
        if (ctx <= 0) {
            throw new IllegalArgumentException("--max-context must be > 0, got " + ctx);
        }
        KvLayout layout = new KvLayout(l, h, d, blockTokens, format);
        boolean overridden = m != null && (l != m.layers() || h != m.kvHeads() || d != m.headDim());
        String name = m == null ? "custom" : overridden ? m.name() + " (overridden)" : m.name();
        String source = m == null ? "--layers/--kv-heads/--head-dim"
                : config != null ? m.hfId() : m.hfId() + " config.json";
        ModelCatalog.Model weights = m;
        if (m == null || overridden) {
            // the sizes the weights would have with these attention shapes (see Resolved)
            int q = m == null ? h : m.queryHeads();
            int hidden = m == null ? h * d : m.hidden();
            weights = new ModelCatalog.Model(name, source, l, q, h, d, ctx, hidden,
                    m == null ? (int) Math.min(Integer.MAX_VALUE, 8L * hidden / 3) : m.intermediate(),
                    m == null ? 32000 : m.vocab(), false, m == null ? 1 : m.experts(), m == null ? 1 : m.expertsPerToken());
        }
        return new Resolved(name, source, layout, ctx, m == null ? -1 : m.queryHeads(), weights, m == null);
    }

    /** picocli converter for KV format names. */
    static final class FormatConverter implements ITypeConverter<KvFormat> {
        @Override
        public KvFormat convert(String value) {
            return KvFormats.byName(value);
        }
    }

    /** picocli converter for byte sizes (80GiB, 512MiB, ...). */
    static final class SizeConverter implements ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            return Sizes.parse(value);
        }
    }
}
