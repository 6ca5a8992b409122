package dev.kvcache.cli;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

class BenchCommandTest {

    private static final Path JAR = Path.of("benchmarks.jar");

    @Test
    void short_defaults_then_user_arguments() {
        List<String> cmd = BenchCommand.command("java", JAR, List.of("BlockManager", "-prof", "gc"));
        assertEquals(List.of("java", "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-jar", "benchmarks.jar", "-f", "1", "-wi", "2", "-i", "3", "-w", "1s", "-r", "1s",
                "BlockManager", "-prof", "gc"), cmd);
    }

    @Test
    void a_user_option_replaces_its_default() {
        List<String> cmd = BenchCommand.command("java", JAR, List.of("-f", "3", "-i5", "-wi", "0"));
        assertEquals(List.of("java", "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-jar", "benchmarks.jar", "-w", "1s", "-r", "1s", "-f", "3", "-i5", "-wi", "0"), cmd);
    }

    @Test
    void listing_and_help_pass_through_alone() {
        assertEquals(List.of("java", "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-jar", "benchmarks.jar", "-l"), BenchCommand.command("java", JAR, List.of("-l")));
    }

    @Test
    void picocli_hands_jmh_options_through() {
        var cl = KvCacheCli.commandLine();
        var parsed = cl.parseArgs("bench", "-prof", "gc", "-f", "2", "Block.*");
        BenchCommand b = (BenchCommand) parsed.subcommand().commandSpec().userObject();
        assertEquals(List.of("-prof", "gc", "-f", "2", "Block.*"), b.jmhArgs);
    }
}
