package dev.kvcache.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;

/**
 * A plain-text table: the first column left-aligned, the others right-aligned unless marked as
 * text, columns two spaces apart. Output only; no arithmetic happens here.
 */
final class Table {

    private final String[] header;
    private final boolean[] leftAligned;
    private final List<String[]> rows = new ArrayList<>();

    /** Columns whose header starts with '<' are left-aligned (the '<' is dropped). */
    Table(String... header) {
        this.header = new String[header.length];
        this.leftAligned = new boolean[header.length];
        for (int i = 0; i < header.length; i++) {
            boolean left = i == 0 || header[i].startsWith("<");
            leftAligned[i] = left;
            this.header[i] = header[i].startsWith("<") ? header[i].substring(1) : header[i];
        }
    }

    Table row(Object... cells) {
        if (cells.length != header.length) {
            throw new IllegalArgumentException("row has " + cells.length + " cells, table has " + header.length + " columns");
        }
        String[] r = new String[cells.length];
        for (int i = 0; i < cells.length; i++) {
            r[i] = String.valueOf(cells[i]);
        }
        rows.add(r);
        return this;
    }

    void print(PrintWriter out, String indent) {
        int[] w = new int[header.length];
        for (int i = 0; i < header.length; i++) {
            w[i] = header[i].length();
            for (String[] r : rows) {
                w[i] = Math.max(w[i], r[i].length());
            }
        }
        line(out, indent, header, w);
        for (String[] r : rows) {
            line(out, indent, r, w);
        }
    }

    private void line(PrintWriter out, String indent, String[] cells, int[] w) {
        StringBuilder sb = new StringBuilder(indent);
        for (int i = 0; i < cells.length; i++) {
            if (i > 0) {
                sb.append("  ");
            }
            String c = cells[i];
            boolean last = i == cells.length - 1;
            if (leftAligned[i]) {
                sb.append(c);
                if (!last) {
                    sb.repeat(' ', w[i] - c.length());
                }
            } else {
                sb.repeat(' ', w[i] - c.length()).append(c);
            }
        }
        out.println(sb.toString().stripTrailing());
    }
}
