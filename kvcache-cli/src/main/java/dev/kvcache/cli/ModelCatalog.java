package dev.kvcache.cli;

import com.fasterxml.jackson.jr.ob.JSON;
import com.fasterxml.jackson.core.JacksonException;
import dev.kvcache.KvFormat;
import dev.kvcache.KvLayout;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The shapes of well-known open models, as their Hugging Face {@code config.json} files give them,
 * and a reader for any such file ({@link #fromConfigJson}).
 *
 * <p>Kept per model: {@code num_hidden_layers}, {@code num_attention_heads},
 * {@code num_key_value_heads}, head size ({@code head_dim}, else {@code hidden_size /
 * num_attention_heads}), {@code max_position_embeddings} (what sizes the KV cache), and
 * {@code hidden_size}, {@code intermediate_size}, {@code vocab_size}, {@code tie_word_embeddings},
 * {@code num_local_experts} / {@code num_experts_per_tok} (what sizes the weights). Parameter
 * counts are derived from these, not typed in: embeddings (twice unless tied), per layer the
 * attention projections (q and o: hidden x heads*headDim; k and v: hidden x kvHeads*headDim), a
 * gated MLP (3 x hidden x intermediate, per expert) and two norms, plus the final norm. Biases and
 * MoE routers (well under 0.1%) are left out. For a mixture of experts, {@link Model#activeParams()}
 * counts only the experts a token uses: that sets the FLOPs, while every expert's weights are read
 * from memory.
 */
final class ModelCatalog {

    private ModelCatalog() {
    }

    /**
     * One model's shape.
     *
     * @param name            short name used on the command line
     * @param hfId            the Hugging Face repository (or file) the numbers come from
     * @param layers          num_hidden_layers
     * @param queryHeads      num_attention_heads
     * @param kvHeads         num_key_value_heads (grouped-query attention when fewer than queryHeads)
     * @param headDim         values per head
     * @param maxContext      max_position_embeddings
     * @param hidden          hidden_size
     * @param intermediate    intermediate_size (per expert)
     * @param vocab           vocab_size
     * @param tied            tie_word_embeddings
     * @param experts         num_local_experts (1 for a dense model)
     * @param expertsPerToken num_experts_per_tok (1 for a dense model)
     */
    record Model(String name, String hfId, int layers, int queryHeads, int kvHeads, int headDim,
                 int maxContext, int hidden, int intermediate, int vocab, boolean tied, int experts,
                 int expertsPerToken) {

        Model {
            for (int v : new int[] {layers, queryHeads, kvHeads, headDim, maxContext, hidden, intermediate, vocab,
                    experts, expertsPerToken}) {
                if (v <= 0) {
                    throw new IllegalArgumentException("model '" + name + "': every size must be > 0, got " + v);
                }
            }
            if (expertsPerToken > experts) {
                throw new IllegalArgumentException("model '" + name + "': num_experts_per_tok " + expertsPerToken
                        + " exceeds num_local_experts " + experts);
            }
        }

        /** A dense model. */
        Model(String name, String hfId, int layers, int queryHeads, int kvHeads, int headDim, int maxContext,
              int hidden, int intermediate, int vocab, boolean tied) {
            this(name, hfId, layers, queryHeads, kvHeads, headDim, maxContext, hidden, intermediate, vocab, tied, 1, 1);
        }

        KvLayout layout(int blockTokens, KvFormat format) {
            return new KvLayout(layers, kvHeads, headDim, blockTokens, format);
        }

        /** Every weight: what a decode step reads from memory. */
        long totalParams() {
            return params(experts);
        }

        /** The weights one token passes through: what its FLOPs are counted from (2 per parameter). */
        long activeParams() {
            return params(expertsPerToken);
        }

        private long params(int expertsUsed) {
            long h = hidden;
            long attn = 2 * h * (long) queryHeads * headDim + 2 * h * (long) kvHeads * headDim;
            long mlp = 3 * h * intermediate * expertsUsed;
            long embeddings = (tied ? 1 : 2) * (long) vocab * h;
            return embeddings + layers * (attn + mlp + 2 * h) + h;
        }
    }

    static final List<Model> MODELS = List.of(
            new Model("Llama-2-7B", "meta-llama/Llama-2-7b-hf", 32, 32, 32, 128, 4096, 4096, 11008, 32000, false),
            new Model("Llama-2-13B", "meta-llama/Llama-2-13b-hf", 40, 40, 40, 128, 4096, 5120, 13824, 32000, false),
            new Model("Llama-2-70B", "meta-llama/Llama-2-70b-hf", 80, 64, 8, 128, 4096, 8192, 28672, 32000, false),
            new Model("Llama-3-8B", "meta-llama/Meta-Llama-3-8B", 32, 32, 8, 128, 8192, 4096, 14336, 128256, false),
            new Model("Llama-3-70B", "meta-llama/Meta-Llama-3-70B", 80, 64, 8, 128, 8192, 8192, 28672, 128256, false),
            new Model("Mistral-7B", "mistralai/Mistral-7B-v0.1", 32, 32, 8, 128, 32768, 4096, 14336, 32000, false),
            new Model("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1", 32, 32, 8, 128, 32768, 4096, 14336, 32000, false,
                    8, 2),
            new Model("Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", 28, 28, 4, 128, 32768, 3584, 18944, 152064, false),
            new Model("Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct", 64, 40, 8, 128, 32768, 5120, 27648, 152064, false),
            new Model("Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct", 80, 64, 8, 128, 32768, 8192, 29568, 152064, false));

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
                + MODELS.stream().map(Model::name).toList()
                + " (or give --config config.json, or --layers, --kv-heads and --head-dim)");
    }

    /**
     * Reads a Hugging Face {@code config.json}: IllegalArgumentException naming the file and the
     * key when it is missing, unreadable, not JSON, or a size is missing, not a positive integer or
     * inconsistent (hidden_size not a multiple of num_attention_heads without head_dim).
     */
    static Model fromConfigJson(Path file) {
        String where = "--config " + file;
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException(where + " is a directory; give the config.json file");
        }
        if (!Files.exists(file)) {
            throw new IllegalArgumentException(where + ": no such file");
        }
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException(where + " is not a regular file; give the config.json file");
        }
        Map<String, Object> o;
        try {
            o = JSON.std.mapFrom(Files.readString(file));
        } catch (JacksonException e) {
            throw new IllegalArgumentException(where + ": not a JSON object (" + firstLine(e.getMessage()) + ")");
        } catch (IOException e) {
            throw new IllegalArgumentException(where + ": " + firstLine(String.valueOf(e.getMessage())));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": not a JSON object (" + firstLine(e.getMessage()) + ")");
        }
        if (o == null) {
            throw new IllegalArgumentException(where + ": not a JSON object");
        }
        // multimodal configs nest the language model's sizes
        if (!o.containsKey("num_hidden_layers") && o.get("text_config") instanceof Map<?, ?> text) {
            @SuppressWarnings("unchecked")
            Map<String, Object> t = (Map<String, Object>) text;
            o = t;
        }
        int layers = size(o, "num_hidden_layers", null, where);
        int hidden = size(o, "hidden_size", null, where);
        int heads = size(o, "num_attention_heads", null, where);
        int kvHeads = size(o, "num_key_value_heads", heads, where);
        Integer headDim = o.get("head_dim") == null ? null : size(o, "head_dim", null, where);
        if (headDim == null) {
            if (hidden % heads != 0) {
                throw new IllegalArgumentException(where + ": hidden_size " + hidden
                        + " is not a multiple of num_attention_heads " + heads + " and head_dim is not given");
            }
            headDim = hidden / heads;
        }
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException(where + ": num_attention_heads " + heads
                    + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        int maxContext = size(o, "max_position_embeddings", null, where);
        int intermediate = size(o, "intermediate_size", 4 * hidden, where);
        int vocab = size(o, "vocab_size", 32000, where);
        boolean tied = Boolean.TRUE.equals(o.get("tie_word_embeddings"));
        int experts = size(o, "num_local_experts", o.get("num_experts") != null ? size(o, "num_experts", 1, where) : 1, where);
        int perToken = size(o, "num_experts_per_tok", 1, where);
        String name = o.get("_name_or_path") instanceof String s && !s.isBlank() ? s
                : file.getFileName().toString();
        try {
            return new Model(name, file.toString(), layers, heads, kvHeads, headDim, maxContext, hidden, intermediate,
                    vocab, tied, experts, Math.min(perToken, experts));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage());
        }
    }

    private static int size(Map<String, Object> o, String key, Integer dflt, String where) {
        Object v = o.get(key);
        if (v == null) {
            if (dflt == null) {
                throw new IllegalArgumentException(where + ": missing '" + key + "'");
            }
            return dflt;
        }
        if (!(v instanceof Number n) || n instanceof Double || n instanceof Float
                || n.longValue() <= 0 || n.longValue() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(where + ": '" + key + "' must be a positive integer, got " + v);
        }
        return n.intValue();
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return (nl < 0 ? s : s.substring(0, nl)).strip();
    }

    private static String normalize(String s) {
        return s == null ? "" : s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9/]", "");
    }
}
