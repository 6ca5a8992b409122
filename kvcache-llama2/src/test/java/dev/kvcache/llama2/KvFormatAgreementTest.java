package dev.kvcache.llama2;

import dev.kvcache.KvFormat;
import dev.kvcache.KvFormats;
import dev.kvcache.Sequence;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * How far quantized KV changes greedy decoding, against the F32 reference.
 *
 * <p>Two measures: free-running agreement (leading ids equal to the F32 stream; one flipped near
 * tie makes the rest differ) and teacher-forced top-1 agreement (each position fed the F32
 * stream's token, so one flip costs one position). stories260K's greedy stream has a near tie at
 * output 37 (top-2 logits 5.62026 vs 5.61735), which is where F16 and BF16 both leave it.
 * Q8_0, Q4_0 and KIVI cannot store this model at all: they quantize groups of 32 values and its
 * head size is 8 (Llama2EngineTest checks the refusal).
 */
class KvFormatAgreementTest {

    private static final int STEPS = 256;

    private record Agreement(int leading, int forcedMatches, int positions) {
    }

    private static Agreement measure(KvFormat f, int[] ref) {
        Llama2Model m = TestModels.stories();
        try (Llama2Engine e = Llama2Engine.create(m, f, 16, Llama2Engine.blocksFor(m, 16, 2), false)) {
            int[] free = e.generate(e.open("free"), new int[] {Llama2Reference.BOS}, STEPS);
            Sequence s = e.open("forced");
            int matches = 0;
            int token = Llama2Reference.BOS;
            for (int pos = 0; pos < ref.length; pos++) {
                if (Llama2Forward.argmax(e.step(s, token)) == ref[pos]) {
                    matches++;
                }
                token = ref[pos];
            }
            return new Agreement(TestModels.agreement(ref, free), matches, ref.length);
        }
    }

    @Test
    void quantizedKvAgreesWithF32() {
        int[] ref = Llama2Reference.greedyFromBos(TestModels.stories(), STEPS);
        assertEquals(STEPS, ref.length);
        Map<KvFormat, Agreement> got = new LinkedHashMap<>();
        for (KvFormat f : new KvFormat[] {KvFormats.F32, KvFormats.F16, KvFormats.BF16,
                KvFormats.FP8_E4M3, KvFormats.FP8_E5M2}) {
            Agreement a = measure(f, ref);
            got.put(f, a);
            System.out.printf("KV %-8s: %3d leading ids equal to F32, teacher-forced top-1 %d/%d%n",
                    f.name(), a.leading(), a.forcedMatches(), a.positions());
        }
        assertEquals(new Agreement(STEPS, STEPS, STEPS), got.get(KvFormats.F32));
        // floors under what was measured on 2026-11-25 (F16 37 leading, 254/256 forced; BF16 37,
        // 252/256; FP8_E4M3 19, 219/256; FP8_E5M2 19, 181/256), so a codec or attention bug fails
        for (KvFormat f : new KvFormat[] {KvFormats.F16, KvFormats.BF16}) {
            assertTrue(got.get(f).leading() >= 32, f + ": " + got.get(f));
            assertTrue(got.get(f).forcedMatches() >= 245, f + ": " + got.get(f));
        }
        for (KvFormat f : new KvFormat[] {KvFormats.FP8_E4M3, KvFormats.FP8_E5M2}) {
            assertTrue(got.get(f).leading() >= 10, f + ": " + got.get(f));
            assertTrue(got.get(f).forcedMatches() >= 160, f + ": " + got.get(f));
        }
    }
}
