package dev.kvcache.cli;

import java.util.List;
import java.util.Locale;

/**
 * A hand-written SVG line chart: KV memory in use over simulation steps, one polyline per
 * configuration, the budget as a dashed line. No dependencies; the output opens in any browser.
 */
final class SvgChart {

    private SvgChart() {
    }

    /** One line: a label and a value per step (bytes). */
    record Series(String label, long[] values) {
    }

    private static final String[] COLORS = {"#444444", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
            "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"};

    static String render(String title, long budgetBytes, List<Series> series) {
        int w = 960;
        int h = 480;
        int left = 70;
        int right = 260;
        int top = 40;
        int bottom = 50;
        int pw = w - left - right;
        int ph = h - top - bottom;
        int steps = series.stream().mapToInt(s -> s.values().length).max().orElse(1);
        double gib = 1L << 30;
        long maxBytes = budgetBytes;
        for (Series s : series) {
            for (long v : s.values()) {
                maxBytes = Math.max(maxBytes, v);
            }
        }
        double yMax = Math.ceil(maxBytes / gib / 10.0) * 10.0;
        if (yMax <= 0) {
            yMax = 1;
        }
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                        + "font-family=\"sans-serif\" font-size=\"12\">%n", w, h, w, h));
        sb.append(String.format(Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", w, h));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"22\" font-size=\"15\">%s</text>%n", left, esc(title)));
        // grid and y labels
        for (int i = 0; i <= 5; i++) {
            double v = yMax * i / 5;
            double y = top + ph - ph * i / 5.0;
            sb.append(String.format(Locale.ROOT,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>%n", left, y, left + pw, y));
            sb.append(String.format(Locale.ROOT,
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f GiB</text>%n", left - 6, y + 4, v));
        }
        // x labels
        for (int i = 0; i <= 6; i++) {
            int step = (int) Math.round((steps - 1) * i / 6.0);
            double x = left + (steps <= 1 ? 0 : (double) pw * step / (steps - 1));
            sb.append(String.format(Locale.ROOT,
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>%n", x, top + ph + 18, step));
        }
        sb.append(String.format(Locale.ROOT,
                "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>%n", left + pw / 2, top + ph + 38));
        sb.append(String.format(Locale.ROOT,
                "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888888\"/>%n",
                left, top, pw, ph));
        // budget
        double yb = top + ph - ph * (budgetBytes / gib) / yMax;
        sb.append(String.format(Locale.ROOT,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"6 4\"/>%n",
                left, yb, left + pw, yb));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\">budget %s</text>%n",
                left + 4, yb - 4, esc(Sizes.human(budgetBytes))));
        for (int k = 0; k < series.size(); k++) {
            Series s = series.get(k);
            String color = COLORS[k % COLORS.length];
            StringBuilder pts = new StringBuilder();
            long[] v = s.values();
            for (int i = 0; i < v.length; i++) {
                double x = left + (v.length <= 1 ? 0 : (double) pw * i / (v.length - 1));
                double y = top + ph - ph * (v[i] / gib) / yMax;
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", x, y));
            }
            sb.append(String.format(Locale.ROOT,
                    "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"%s\"/>%n",
                    color, pts.toString().trim()));
            int ly = top + 10 + k * 20;
            sb.append(String.format(Locale.ROOT,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>%n",
                    left + pw + 15, ly, left + pw + 35, ly, color));
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\">%s</text>%n",
                    left + pw + 40, ly + 4, esc(s.label().strip())));
        }
        sb.append("</svg>\n");
        return sb.toString();
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
