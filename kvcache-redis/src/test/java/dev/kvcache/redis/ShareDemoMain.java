package dev.kvcache.redis;

import dev.kvcache.offheap.OffHeapKvStore;

/** {@link ShareDemo} as a process of its own with an off-heap store: what {@code bin/kvcache share} runs. */
public final class ShareDemoMain {

    private ShareDemoMain() {
    }

    /** {@code --redis URI --role writer|reader [--tokens N]}. */
    public static void main(String[] args) {
        String redis = null;
        String role = null;
        int tokens = 1000;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--redis" -> redis = args[i + 1];
                case "--role" -> role = args[i + 1];
                case "--tokens" -> tokens = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        int code = ShareDemo.run(new ShareDemo.Options(redis, role, tokens, "share-demo", 0, 1, "F16"),
                OffHeapKvStore::allocate, new java.io.PrintWriter(System.out, true));
        System.exit(code);
    }
}
