package dev.kvcache.cli;

import dev.kvcache.quant.AccuracyReport;
import dev.kvcache.quant.Quantizers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.PrintWriter;
import java.util.concurrent.Callable;

/**
 * {@code kvcache accuracy}: the quantizers' accuracy table on synthetic KV with realistic statistics
 * (head_dim 128, keys with outlier channels, Gaussian values), against float64: bits per element,
 * relative error of K, V and the decode attention output, and the KL divergence of the attention
 * probabilities. The README's table is this command's output.
 */
@Command(name = "accuracy", mixinStandardHelpOptions = true,
        description = "Accuracy of every KV format on synthetic KV against float64 (Markdown table).")
public final class AccuracyCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    /** Creates the command; picocli sets its options and its spec before calling it. */
    public AccuracyCommand() {
    }

    @Option(names = "--tokens", defaultValue = "1024", description = "Tokens of synthetic KV (default ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--block-tokens", defaultValue = "16", description = "Tokens per block (default ${DEFAULT-VALUE}).")
    int blockTokens;

    @Option(names = "--seed", defaultValue = "1", description = "Random seed (default ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() {
        if (tokens <= 0 || blockTokens <= 0 || tokens % blockTokens != 0) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--tokens " + tokens
                    + " must be a positive multiple of --block-tokens " + blockTokens);
        }
        PrintWriter out = spec.commandLine().getOut();
        out.println("Synthetic KV: head_dim 128, " + tokens + " tokens, blockTokens " + blockTokens + ", seed "
                + seed + "; keys N(0,1) with four channels x10, values N(0,1), 16 Gaussian queries; kernels: "
                + Quantizers.provider() + "; '+H' = Hadamard-rotated keys");
        out.println();
        out.print(AccuracyReport.table(AccuracyReport.measure(tokens, blockTokens, seed)));
        out.flush();
        return 0;
    }
}
