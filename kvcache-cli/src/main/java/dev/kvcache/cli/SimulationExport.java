package dev.kvcache.cli;

import com.fasterxml.jackson.jr.ob.JSON;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code simulate --json} and {@code --csv}: every figure of the run. JSON (jackson-jr) holds the
 * settings, the model, the hardware, each configuration's totals, its routes' figures and its
 * per-step series; CSV holds one row per configuration and route, the configuration's totals
 * repeated on each of its rows. Times are seconds, sizes bytes; a missing percentile (no sample)
 * is null in JSON and empty in CSV.
 */
final class SimulationExport {

    private SimulationExport() {
    }

    static void json(Path file, SimulationReport report, Map<String, SimResult> results) throws IOException {
        Map<String, Object> root = new LinkedHashMap<>();
        Simulator.Settings s = report.settings;
        StepTimeModel t = s.time();
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("name", report.model.name());
        model.put("layers", report.base.layers());
        model.put("kvHeads", report.base.kvHeads());
        model.put("headDim", report.base.headDim());
        model.put("maxContext", report.model.maxContext());
        model.put("totalParams", t.totalParams());
        model.put("activeParams", t.activeParams());
        model.put("weightBytes", t.weightBytes());
        model.put("paramsEstimated", report.model.estimated());
        root.put("model", model);
        HardwareProfile hw = t.hardware();
        Map<String, Object> h = new LinkedHashMap<>();
        h.put("name", hw.name());
        h.put("gpus", t.gpus());
        h.put("memoryGB", hw.memoryGB());
        h.put("hbmGBps", hw.hbmGBps());
        h.put("bf16Tflops", hw.bf16Tflops());
        h.put("fp8Tflops", hw.fp8Tflops());
        h.put("hostLinkGBps", s.hostLinkGBps());
        h.put("networkGBps", hw.networkGBps());
        h.put("fp8Weights", t.fp8Weights());
        h.put("memEfficiency", t.memEfficiency());
        h.put("flopEfficiency", t.flopEfficiency());
        root.put("hardware", h);
        Map<String, Object> st = new LinkedHashMap<>();
        st.put("budgetBytes", s.budgetBytes());
        st.put("steps", s.steps());
        st.put("decodeChunk", s.decodeChunk());
        st.put("prefillChunk", s.prefillChunk());
        st.put("maxModelLen", s.maxModelLen());
        st.put("truncate", s.truncate());
        st.put("sinkTokens", s.sinkTokens());
        st.put("windowTokens", s.windowTokens());
        st.put("idleDeadlineSteps", s.idleDeadlineSteps());
        st.put("watermark", s.watermark());
        st.put("hostBudgetBytes", s.hostBudgetBytes());
        st.put("sharedBudgetBytes", s.sharedBudgetBytes());
        st.put("evictionPolicy", s.priorityEviction() ? "priority" : "lru");
        st.put("longThreshold", s.longThreshold());
        st.put("longShare", s.longShare());
        root.put("settings", st);
        List<Object> routes = new ArrayList<>();
        for (Workload.Route r : report.routes) {
            routes.add(JSON.std.mapFrom(Workload.toJsonLine(r)));
        }
        root.put("workload", routes);
        List<Object> configs = new ArrayList<>();
        for (SimResult r : results.values()) {
            Map<String, Object> c = totals(r);
            List<Object> rs = new ArrayList<>();
            for (RouteLedger l : r.routes()) {
                rs.add(route(l, r.simulatedSeconds(), r.config().paged()));
            }
            c.put("routes", rs);
            Map<String, Object> series = new LinkedHashMap<>();
            series.put("usedBytes", r.usedBytes());
            series.put("cachedBytes", r.cachedBytes());
            series.put("running", r.running());
            series.put("stepSeconds", r.stepSeconds());
            c.put("series", series);
            configs.add(c);
        }
        root.put("configs", configs);
        Files.writeString(file, JSON.std.with(JSON.Feature.PRETTY_PRINT_OUTPUT).asString(root), StandardCharsets.UTF_8);
    }

    static Map<String, Object> totals(SimResult r) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("config", r.config().name().strip());
        c.put("comparedTo", r.config().comparedTo() == null ? null : r.config().comparedTo().strip());
        c.put("format", r.layout().format().name());
        c.put("bytesPerToken", r.layout().bytesPerToken());
        c.put("poolBytes", r.poolBytes());
        c.put("peakRunning", r.peakRunning());
        c.put("completed", r.completions());
        c.put("queuedAtEnd", r.waitingAtEnd());
        c.put("allocationFailures", r.allocationFailures());
        c.put("preemptions", r.preemptions());
        c.put("swaps", r.swaps());
        c.put("recomputedTokens", r.recomputedTokens());
        c.put("evictedBlocks", r.evictedBlocks());
        c.put("prefixHitTokens", r.prefixHitTokens());
        c.put("windowReleasedBlocks", r.windowReleasedBlocks());
        c.put("idleReleased", r.idleReleased());
        c.put("idleReleasedBytes", r.idleReleasedBytes());
        c.put("idleHeldBytesEnd", r.idleHeldBytesEnd());
        c.put("peakUsedBytes", r.peakUsedBytes());
        c.put("minHeadroomBytes", r.minHeadroomBytes());
        c.put("avgSlotWaste", r.avgSlotWaste());
        c.put("simulatedSeconds", r.simulatedSeconds());
        c.put("generatedTokens", r.generatedTokens());
        c.put("outputTokensPerSecond", r.generatedTokens() / r.simulatedSeconds());
        c.put("sloAttainment", nan(SimulationReport.sloAttainment(r)));
        c.put("transferBytes", r.transferBytes());
        c.put("transferSeconds", r.transferSeconds());
        c.put("recomputeSeconds", r.recomputeSeconds());
        if (r.finalLedger() != null && !r.finalLedger().tiers().isEmpty()) {
            c.put("tierHitTokens", r.finalLedger().tierHitTokens());
            c.put("demotedBlocks", r.finalLedger().demotedBlocks());
            c.put("promotedBlocks", r.finalLedger().promotedBlocks());
        }
        c.put("replayMillis", r.elapsedNanos() / 1e6);
        return c;
    }

    static Map<String, Object> route(RouteLedger l, double seconds, boolean paged) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("route", l.route.name());
        m.put("sessions", l.route.sessions());
        m.put("arrivals", l.arrivals);
        m.put("admissions", l.admissions);
        m.put("completions", l.completions);
        m.put("firstTokens", l.ttft.count());
        m.put("queueWaitP50", nan(l.queueWait.percentile(50)));
        m.put("queueWaitP99", nan(l.queueWait.percentile(99)));
        m.put("ttftP50", nan(l.ttft.percentile(50)));
        m.put("ttftP99", nan(l.ttft.percentile(99)));
        m.put("itlP50", nan(l.itl.percentile(50)));
        m.put("itlP99", nan(l.itl.percentile(99)));
        m.put("generatedTokens", l.generatedTokens);
        m.put("outputTokensPerSecond", l.generatedTokens / seconds);
        m.put("ttftSlo", l.route.ttftSlo());
        m.put("itlSlo", l.route.itlSlo());
        m.put("sloMet", l.sloMet);
        m.put("sloDecided", l.sloDecided);
        m.put("sloAttainment", nan(l.sloAttainment()));
        m.put("tokensLost", l.tokensLost);
        m.put("refused", l.refused);
        m.put("truncated", l.truncated);
        m.put("dropped", l.dropped);
        m.put("peakRunning", l.peakRunning);
        m.put("avgActiveTokens", l.avgActiveTokens());
        m.put("kvByteSteps", l.heldByteSteps);
        m.put("kvPeakBytes", l.peakHeldBytes);
        m.put("allocationFailures", l.allocationFailures);
        m.put("preemptions", l.preemptions);
        m.put("swaps", l.swaps);
        m.put("recomputedTokens", l.recomputedTokens);
        m.put("rolledBackTokens", l.rolledBackTokens);
        m.put("prefixHitTokens", l.prefixHitTokens);
        m.put("evictedBlocks", paged ? l.evictedBlocks : null);
        m.put("idleReleased", l.idleReleased);
        m.put("idleReleasedBytes", l.idleReleasedBytes);
        m.put("idleHeldBytesEnd", l.idleHeldBytesEnd);
        m.put("waitingAtEnd", l.waitingAtEnd);
        m.put("runningAtEnd", l.runningAtEnd);
        return m;
    }

    static void csv(Path file, Map<String, SimResult> results) throws IOException {
        StringBuilder sb = new StringBuilder();
        List<String> header = null;
        for (SimResult r : results.values()) {
            Map<String, Object> totals = totals(r);
            for (RouteLedger l : r.routes()) {
                Map<String, Object> row = new LinkedHashMap<>();
                totals.forEach((k, v) -> row.put(k, v));
                route(l, r.simulatedSeconds(), r.config().paged()).forEach((k, v) -> row.put("route." + k, v));
                if (header == null) {
                    header = new ArrayList<>(row.keySet());
                    sb.append(String.join(",", header)).append('\n');
                }
                List<String> cells = new ArrayList<>();
                for (String k : header) {
                    cells.add(cell(row.get(k)));
                }
                sb.append(String.join(",", cells)).append('\n');
            }
        }
        Files.writeString(file, sb, StandardCharsets.UTF_8);
    }

    private static String cell(Object v) {
        if (v == null) {
            return "";
        }
        String s = String.valueOf(v);
        return s.contains(",") || s.contains("\"") ? "\"" + s.replace("\"", "\"\"") + "\"" : s;
    }

    private static Double nan(double v) {
        return Double.isNaN(v) ? null : v;
    }
}
