package dev.kvcache.cli;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where the repository is: {@code -Dkvcache.home} (set by bin/kvcache), else above this jar, else the working directory. */
final class KvCacheHome {

    private KvCacheHome() {
    }

    static Path root() {
        String home = System.getProperty("kvcache.home");
        if (home != null && !home.isBlank()) {
            return Path.of(home).toAbsolutePath().normalize();
        }
        try {
            var src = KvCacheHome.class.getProtectionDomain().getCodeSource();
            if (src != null) {
                // .../kvcache-cli/target/kvcache.jar or .../kvcache-cli/target/classes
                Path p = Path.of(src.getLocation().toURI()).toAbsolutePath();
                Path candidate = p.getParent() == null ? null : p.getParent().getParent();
                if (candidate != null) {
                    candidate = candidate.getParent();
                }
                if (candidate != null && Files.isRegularFile(candidate.resolve("pom.xml"))
                        && Files.isDirectory(candidate.resolve("benchmarks"))) {
                    return candidate;
                }
            }
        } catch (URISyntaxException | SecurityException | IllegalArgumentException e) {
            // fall through to the working directory
        }
        return Path.of("").toAbsolutePath();
    }
}
