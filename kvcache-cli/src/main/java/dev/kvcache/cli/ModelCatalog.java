package dev.kvcache.cli;

import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;

import java.util.List;
import java.util.Locale;

/**
 * The attention shapes of well-known open models, as their Hugging Face {@code config.json} files
 * give them: {@code num_hidden_layers}, {@code num_key_value_heads}, head size
 * ({@code hidden_size / num_attention_heads}, or {@code head_dim} where the file states it) and
 * {@code max_position_embeddings}. Only what sizes the KV cache is kept; the planner derives every
 * byte count from these through {@link KvLayout}.
 */
final class ModelCatalog {

    private ModelCatalog() {
    }

    /**
     * One model's KV shape.
     *
     * @param name        short name used on the command line
     * @param hfId        the Hugging Face repository the numbers come from
     * @param layers      num_hidden_layers
     * @param queryHeads  num_attention_heads
     * @param kvHeads     num_key_value_heads (grouped-query attention when fewer than queryHeads)
     * @param headDim     values per head
     * @param maxContext  max_position_embeddings
     */
    record Model(String name, String hfId, int layers, int queryHeads, int kvHeads, int headDim,
                 int maxContext) {

        KvLayout layout(int blockTokens, KvFormat format) {
            return new KvLayout(layers, kvHeads, headDim, blockTokens, format);
        }
    }

    static final List<Model> MODELS = List.of(
            new Model("Llama-2-7B", "meta-llama/Llama-2-7b-hf", 32, 32, 32, 128, 4096),
            new Model("Llama-2-13B", "meta-llama/Llama-2-13b-hf", 40, 40, 40, 128, 4096),
            new Model("Llama-2-70B", "meta-llama/Llama-2-70b-hf", 80, 64, 8, 128, 4096),
            new Model("Llama-3-8B", "meta-llama/Meta-Llama-3-8B", 32, 32, 8, 128, 8192),
            new Model("Llama-3-70B", "meta-llama/Meta-Llama-3-70B", 80, 64, 8, 128, 8192),
            new Model("Mistral-7B", "mistralai/Mistral-7B-v0.1", 32, 32, 8, 128, 32768),
            new Model("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1", 32, 32, 8, 128, 32768),
            new Model("Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", 28, 28, 4, 128, 32768),
            new Model("Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct", 64, 40, 8, 128, 32768),
            new Model("Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct", 80, 64, 8, 128, 32768));

    /** The model of that name (case, dots, dashes and spaces ignored); IllegalArgumentException listing the names otherwise. */
    static Model byName(String name) {
        String key = normalize(name);
        for (Model m : MODELS) {
            String repo = m.hfId().substring(m.hfId().indexOf('/') + 1);
            if (key.equals(normalize(m.name())) || key.equals(normalize(m.hfId())) || key.equals(normalize(repo))) {
                return m;
            }
        }
        throw new IllegalArgumentException("unknown model '" + name + "'; known: "
                + MODELS.stream().map(Model::name).toList() + " (or give --layers, --kv-heads and --head-dim)");
    }

    private static String normalize(String s) {
        return s == null ? "" : s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9/]", "");
    }
}
