package dev.kvcache.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class KvCacheCliTest {

    @Test
    void lists_every_subcommand() {
        CliRun r = CliRun.of("--help");
        assertEquals(0, r.exitCode(), r.err());
        for (String c : new String[] {"plan", "simulate", "bench", "generate", "accuracy"}) {
            assertTrue(r.out().lines().anyMatch(l -> l.strip().startsWith(c + " ")), c + " missing in\n" + r.out());
        }
    }

    @Test
    void generate_is_the_engines_command() {
        var sub = KvCacheCli.commandLine().getSubcommands().get("generate");
        assertEquals("dev.kvcache.llama2.GenerateCommand", sub.getCommand().getClass().getName());
    }

    @Test
    void unknown_options_are_refused_with_usage() {
        CliRun r = CliRun.of("plan", "--budgett", "1GiB");
        assertEquals(2, r.exitCode());
        assertTrue(r.err().contains("--budgett"), r.err());
    }

    @Test
    void accuracy_prints_the_table_for_every_format() {
        CliRun r = CliRun.of("accuracy", "--tokens", "256");
        assertEquals(0, r.exitCode(), r.err());
        for (dev.kvcache.KvFormat f : dev.kvcache.KvFormats.all()) {
            assertTrue(r.out().contains("| " + f.name() + " |"), f + " missing in\n" + r.out());
        }
        CliRun bad = CliRun.of("accuracy", "--tokens", "100");
        assertEquals(2, bad.exitCode());
        assertTrue(bad.err().contains("100"), bad.err());
    }
}
