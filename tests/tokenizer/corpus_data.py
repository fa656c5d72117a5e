"""Constants and text shared by the tokenizer fixture and benchmark scripts (standard library only).

Qwen2's pre-tokenizer pattern, Qwen2-VL's special tokens and chat template, text fragments in
many scripts, and make_mixed_text(): a large deterministic mixed-script text for benchmarks.
"""
import random

# Qwen2's tokenizer.json pre-tokenizer Split pattern (Qwen2 / Qwen2-VL / Qwen2.5: single digits).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

QWEN2VL_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The chat template shipped with Qwen/Qwen2-VL-2B-Instruct (chat_template.json).
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


EN = """The quick brown fox jumps over the lazy dog. It's a test; they're sure we'll see what
you've done, I'm told. Don't panic! Numbers like 3.14159, 2024-11-29, 1,000,000 and 0x7fff_ffff
appear everywhere. The model's tokenizer splits words, punctuation and spaces.  Double  spaces
and\ttabs\tmatter. Vision-language models read images and write text about them."""
FR = "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ? Ça va très bien, merci."
DE = "Größenwahn und Straßenbahn: Übermäßig schöne Äpfel fallen nicht weit vom Stamm."
ES = "¿Dónde está el niño? ¡Qué día más bonito! Mañana será otro día."
RU = "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России."
EL = "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η γλώσσα μου έδωσαν ελληνική."
AR = "مرحبا بالعالم. اللغة العربية جميلة جدا، وتكتب من اليمين إلى اليسار."
HE = "שלום עולם. עברית נכתבת מימין לשמאל."
HI = "नमस्ते दुनिया। हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।"
TH = "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ"
ZH = "你好，世界！今天天气很好，我们去公园散步吧。机器学习和自然语言处理是人工智能的重要分支。视觉语言模型可以理解图片。"
JA = "こんにちは世界。日本語はひらがな、カタカナ、漢字を使います。東京タワーに行きましょう！"
KO = "안녕하세요 세계. 한국어는 한글로 씁니다. 오늘 날씨가 좋네요."
EMOJI = "I love 🍕 and 🐍! 👍🏽 Family: 👨‍👩‍👧‍👦 Flags: 🇯🇵🇫🇷 ❤️ 🏳️‍🌈 ✨🎉😀😂🤖"
CODE = '''def encode(self, text: str) -> list[int]:
    """Encode text."""
    ids = []
    for i, ch in enumerate(text):
        if ch == "\\n":
            ids.append(0x0A)  # newline
    return ids

int main(int argc, char **argv) {
\tfor (size_t i = 0; i < 10; i++)
\t\tprintf("%zu\\n", i * 42);
\treturn argc > 1 ? -EINVAL : 0;
}
<html><body class="x">&nbsp;&lt;tag&gt;</body></html>
{"key": [1, 2.5e-3, true, null], "name": "vlmd"}
$ ./configure --prefix=/usr && make -j8 && sudo make install
'''
NUM = "0 1 12 123 1234 12345 123456789 3.14 -42 +7 1e10 ¼ ½ ² ٣ ४ ๕ 一二三 ①②③ Ⅻ"
WS = "a  b   c    d\n\ne\n\n\nf \n g\r\nh\t\t i   \n   j\u3000k\u00a0l"



FRAGMENTS = [EN, FR, DE, ES, RU, EL, AR, HE, HI, TH, ZH, JA, KO, EMOJI, CODE, NUM, WS]


def make_mixed_text(n_bytes, seed=1):
    """About n_bytes of UTF-8: paragraphs of shuffled words of one script at a time, code blocks,
    numbers and whitespace runs, so words repeat like natural text but sentences do not."""
    rng = random.Random(seed)
    pools = [f.split() for f in FRAGMENTS]
    cjk = [ZH, JA, KO, TH]
    out, size = [], 0
    while size < n_bytes:
        r = rng.random()
        if r < 0.1:
            para = CODE.replace("42", str(rng.randint(0, 99999)))
        elif r < 0.25:
            f = rng.choice(cjk)
            para = "".join(f[i:i + rng.randint(2, 12)] for i in
                           (rng.randrange(len(f)) for _ in range(rng.randint(5, 30))))
        else:
            pool = rng.choice(pools)
            words = [rng.choice(pool) for _ in range(rng.randint(20, 120))]
            for _ in range(rng.randint(0, 4)):
                words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 10 ** 7)))
            para = " ".join(words)
        para += rng.choice(["\n\n", "\n", "\n\n\n", "  \n"])
        out.append(para)
        size += len(para.encode("utf-8"))
    return "".join(out)
