package dev.kvcache.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SizesTest {

    @Test
    void parses_binary_and_decimal_units() {
        assertEquals(80L << 30, Sizes.parse("80GiB"));
        assertEquals(80L << 30, Sizes.parse("80 G"));
        assertEquals(80_000_000_000L, Sizes.parse("80GB"));
        assertEquals(512L << 20, Sizes.parse("512mib"));
        assertEquals(1536L << 20, Sizes.parse("1.5GiB"));
        assertEquals(12345, Sizes.parse("12345"));
        assertEquals(7, Sizes.parse("7B"));
    }

    @Test
    void rejects_what_is_not_a_size() {
        for (String bad : new String[] {"", "GiB", "-1GiB", "1e9", "10 parsecs", "9999999999TiB"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Sizes.parse(bad), bad);
            assertTrue(e.getMessage().contains(bad), e.getMessage());
        }
    }

    @Test
    void formats_with_binary_units() {
        assertEquals("80 GiB", Sizes.human(80L << 30));
        assertEquals("256 KiB", Sizes.human(262_144));
        assertEquals("1.5 KiB", Sizes.human(1536));
        assertEquals("17 B", Sizes.human(17));
        assertEquals("524,288", Sizes.count(524_288));
    }
}
