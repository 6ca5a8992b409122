package dev.kvcache.cli;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.VectorGraphicsEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The charts of {@code kvcache simulate}, drawn with XChart: KV memory in use over simulated time
 * per configuration (with the budget), and per route the TTFT CDF of every configuration. A
 * {@code .svg} file goes through XChart's VectorGraphics2D encoder, a {@code .png} through its
 * bitmap encoder; AWT runs headless.
 */
final class SimulationCharts {

    private SimulationCharts() {
    }

    /** One line naming the flag unless {@code file} ends in .svg or .png. */
    static void checkFormat(String flag, Path file) {
        if (file != null && !(name(file).endsWith(".svg") || name(file).endsWith(".png"))) {
            throw new IllegalArgumentException(flag + " " + file + ": give a .svg or .png file name");
        }
    }

    static void memory(Path file, String title, long budget, Map<String, SimResult> results) throws IOException {
        XYChart chart = chart("KV memory in use: " + title, "simulated time (s)", "GiB");
        double gib = 1L << 30;
        double endTime = 0;
        for (SimResult r : results.values()) {
            double[] t = r.clock();
            double[] y = new double[t.length];
            for (int i = 0; i < y.length; i++) {
                y[i] = r.usedBytes()[i] / gib;
            }
            endTime = Math.max(endTime, t.length == 0 ? 0 : t[t.length - 1]);
            chart.addSeries(r.config().name().strip(), t, y).setMarker(SeriesMarkers.NONE);
        }
        XYSeries b = chart.addSeries("budget", new double[] {0, Math.max(endTime, 1e-9)},
                new double[] {budget / gib, budget / gib});
        b.setMarker(SeriesMarkers.NONE);
        b.setLineStyle(new java.awt.BasicStroke(1.5f, java.awt.BasicStroke.CAP_BUTT, java.awt.BasicStroke.JOIN_MITER,
                10f, new float[] {6f, 4f}, 0f));
        save(chart, file);
    }

    /** One chart per route, written next to {@code file} as {@code <stem>-<route><ext>}; returns the paths. */
    static List<Path> ttftCdf(Path file, List<Workload.Route> routes, Map<String, SimResult> results) throws IOException {
        List<Path> written = new ArrayList<>();
        String n = name(file);
        String ext = n.substring(n.lastIndexOf('.'));
        String stem = file.getFileName().toString();
        stem = stem.substring(0, stem.length() - ext.length());
        for (Workload.Route route : routes) {
            XYChart chart = chart("TTFT CDF: " + route.name() + " (SLO " + SimulationReport.seconds(route.ttftSlo()) + ")",
                    "time to first token (s)", "fraction of requests");
            for (SimResult r : results.values()) {
                double[][] cdf = r.route(route.name()).ttft.cdf();
                if (cdf[0].length == 0) {
                    continue;
                }
                chart.addSeries(r.config().name().strip(), cdf[0], cdf[1]).setMarker(SeriesMarkers.NONE);
            }
            if (chart.getSeriesMap().isEmpty()) {
                chart.addSeries("no first token", new double[] {0}, new double[] {0});
            }
            Path p = file.resolveSibling(stem + "-" + route.name().toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]+", "-") + ext);
            save(chart, p);
            written.add(p);
        }
        return written;
    }

    /** Twelve distinct colours (Tableau 10 and two more), so that the default rows never share one. */
    private static final java.awt.Color[] PALETTE = {
            new java.awt.Color(0x4e79a7), new java.awt.Color(0xf28e2b), new java.awt.Color(0xe15759),
            new java.awt.Color(0x76b7b2), new java.awt.Color(0x59a14f), new java.awt.Color(0xedc948),
            new java.awt.Color(0xb07aa1), new java.awt.Color(0xff9da7), new java.awt.Color(0x9c755f),
            new java.awt.Color(0xbab0ac), new java.awt.Color(0x17becf), new java.awt.Color(0x000000)};

    private static XYChart chart(String title, String x, String y) {
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(960).height(520).title(title).xAxisTitle(x).yAxisTitle(y).build();
        chart.getStyler().setLegendPosition(org.knowm.xchart.style.Styler.LegendPosition.OutsideE);
        chart.getStyler().setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
        chart.getStyler().setSeriesColors(PALETTE);
        return chart;
    }

    private static void save(XYChart chart, Path file) throws IOException {
        String f = file.toString();
        if (name(file).endsWith(".png")) {
            BitmapEncoder.saveBitmap(chart, f, BitmapEncoder.BitmapFormat.PNG);
        } else {
            VectorGraphicsEncoder.saveVectorGraphic(chart, f, VectorGraphicsEncoder.VectorGraphicsFormat.SVG);
        }
    }

    private static String name(Path file) {
        return file.getFileName().toString().toLowerCase(Locale.ROOT);
    }
}
