"""Text models end to end: strings in, embeddings out, compared with an independent numpy (fp64) BERT
built from the same safetensors weights and the Python `tokenizers` package."""
import json
import math
import struct
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tokenizers import Tokenizer
from tritonclient.utils import InferenceServerException

SENTENCES = ["A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply today."]
EDGE = ["", "héllo wörld — ünïcode ✓ 日本語", "word " * 400, "a"]


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        s, e = meta["data_offsets"]
        out[name.removeprefix("bert.")] = np.frombuffer(raw[8 + n + s:8 + n + e], np.float32).reshape(meta["shape"]).astype(np.float64)
    return out


def reference(model_dir, texts, max_length):
    return np.array([e / np.linalg.norm(e) for e in (h.mean(0) for h in hidden_states(model_dir, texts, max_length)[0])])


def hidden_states(model_dir, texts, max_length):
    """Last hidden states per text, and the weights (fp64)."""
    cfg = json.load(open(model_dir / "config.json"))
    w = read_safetensors(model_dir / "model.safetensors")
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    erf = np.vectorize(math.erf)
    eps = cfg.get("layer_norm_eps", 1e-12)
    ln = lambda x, p: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * w[p + ".weight"] + w[p + ".bias"]
    lin = lambda x, p: x @ w[p + ".weight"].T + w[p + ".bias"]
    heads = cfg["num_attention_heads"]
    out = []
    for text in texts:
        enc = tok.encode(text)
        ids, types = np.array(enc.ids), np.array(enc.type_ids)
        t = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t] + w["embeddings.token_type_embeddings.weight"][types]
        x = ln(x, "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            split = lambda y: y.reshape(t, heads, -1).transpose(1, 0, 2)
            q, k, v = (split(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(t, -1)
            x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            hmid = lin(x, p + "intermediate.dense")
            hmid = 0.5 * hmid * (1 + erf(hmid / math.sqrt(2)))
            x = ln(x + lin(hmid, p + "output.dense"), p + "output.LayerNorm")
        out.append(x)
    return out, w


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.url)
    yield c
    c.close()


def embed(client, model, texts, binary=True):
    arr = np.array([t.encode() for t in texts], dtype=np.object_)
    i = httpclient.InferInput("text", [len(texts)], "BYTES")
    i.set_data_from_numpy(arr, binary_data=binary)
    return client.infer(model, [i]).as_numpy("embedding")


def cosines(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_model_metadata_describes_text_in_and_embeddings_out(client):
    m = client.get_model_metadata("tiny_bert")
    assert m["platform"] == "candle_safetensors"
    assert m["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert m["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]


@pytest.mark.parametrize("binary", [False, True])
def test_tiny_bert_matches_the_numpy_reference_on_edge_cases(client, test_repo, binary):
    texts = SENTENCES + EDGE
    got = embed(client, "tiny_bert", texts, binary)
    want = reference(test_repo / "tiny_bert" / "1", texts, 16)
    assert got.shape == (len(texts), 32)
    assert cosines(got, want).min() >= 0.9999, cosines(got, want)
    # Each text alone gives the same embedding as in the padded batch.
    for i, text in enumerate(texts):
        alone = embed(client, "tiny_bert", [text], binary)[0]
        assert cosines(alone, got[i]) >= 0.99999


def test_empty_batch_and_rejected_lengths(client):
    assert embed(client, "tiny_bert", []).shape == (0, 32)
    with pytest.raises(InferenceServerException) as e:
        embed(client, "tiny_bert_reject", ["word " * 40])
    assert e.value.status() == "400" and "text 0" in e.value.message() and "tokens long" in e.value.message()
    assert embed(client, "tiny_bert_reject", ["short text"]).shape == (1, 32)


def test_a_megabyte_of_text_costs_only_what_the_model_reads(client):
    # Cut before tokenizing: the embedding is that of the first 16 tokens, and it comes back at once.
    started = time.monotonic()
    big = embed(client, "tiny_bert", ["word " * 200_000])
    assert time.monotonic() - started < 2
    np.testing.assert_allclose(big, embed(client, "tiny_bert", ["word " * 20]), rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as e:
        embed(client, "tiny_bert_reject", ["word " * 200_000])
    assert e.value.status() == "400" and "1000000 bytes long" in e.value.message(), e.value.message()


def test_a_call_over_the_token_budget_is_refused_naming_it(client):
    texts = ["short text"] * 6  # 11 tokens each: 66 over the budget of 64, 55 for five
    with pytest.raises(InferenceServerException) as e:
        embed(client, "tiny_bert_reject", texts)
    assert e.value.status() == "400" and "budget of 64 tokens" in e.value.message(), e.value.message()
    assert embed(client, "tiny_bert_reject", texts[:5]).shape == (5, 32)


def test_minilm_embeds_like_the_reference_and_ranks_paraphrases(client, test_repo):
    model_dir = test_repo / "minilm" / "1"
    if not (model_dir / "model.safetensors").exists():
        pytest.skip("the all-MiniLM-L6-v2 package is not installed (make setup installs it)")
    got = embed(client, "minilm", SENTENCES + EDGE[:2])
    want = reference(model_dir, SENTENCES + EDGE[:2], 256)
    assert cosines(got, want).min() >= 0.9999, cosines(got, want)
    sim = got @ got.T
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.1 and sim[1, 2] < 0.1, sim


def test_int8_onnx_minilm_takes_text_and_agrees_with_the_reference(client, test_repo):
    onnx_dir, fp32_dir = test_repo / "minilm_onnx" / "1", test_repo / "minilm" / "1"
    if not (onnx_dir / "model.onnx").exists() or not (fp32_dir / "model.safetensors").exists():
        pytest.skip("the MiniLM packages are not installed (make setup installs them)")
    m = client.get_model_metadata("minilm_onnx")
    assert m["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1], "optional": True}
    assert {"name": "embedding", "datatype": "FP32", "shape": [-1, 384]} in m["outputs"]
    arr = np.array([t.encode() for t in SENTENCES], dtype=np.object_)
    i = httpclient.InferInput("text", [len(SENTENCES)], "BYTES")
    i.set_data_from_numpy(arr)
    got = client.infer("minilm_onnx", [i], outputs=[httpclient.InferRequestedOutput("embedding")]).as_numpy("embedding")
    want = reference(fp32_dir, SENTENCES, 256)
    assert cosines(got, want).min() >= 0.999, cosines(got, want)
    candle = embed(client, "minilm", SENTENCES)
    assert cosines(got, candle).min() >= 0.999


def test_clients_that_tokenize_themselves_still_send_token_ids(client, test_repo):
    onnx_dir = test_repo / "minilm_onnx" / "1"
    if not (onnx_dir / "model.onnx").exists():
        pytest.skip("the MiniLM packages are not installed (make setup installs them)")
    tok = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    enc = tok.encode(SENTENCES[0])
    ids = np.array([enc.ids], np.int64)
    inputs = []
    for name, value in [("input_ids", ids), ("attention_mask", np.ones_like(ids)), ("token_type_ids", np.zeros_like(ids))]:
        t = httpclient.InferInput(name, list(value.shape), "INT64")
        t.set_data_from_numpy(value)
        inputs.append(t)
    r = client.infer("minilm_onnx", inputs)
    assert r.as_numpy("last_hidden_state").shape == (1, len(enc.ids), 384)
    from_ids = r.as_numpy("embedding")[0]
    i = httpclient.InferInput("text", [1], "BYTES")
    i.set_data_from_numpy(np.array([SENTENCES[0].encode()], dtype=np.object_))
    from_text = client.infer("minilm_onnx", [i], outputs=[httpclient.InferRequestedOutput("embedding")]).as_numpy("embedding")[0]
    assert cosines(from_ids, from_text) >= 0.99999
    with pytest.raises(InferenceServerException) as e:
        client.infer("minilm_onnx", inputs[:1])
    assert e.value.status() == "400" and "attention_mask" in e.value.message()


def test_a_checkpoint_with_a_classifier_head_returns_logits_and_labels(client, test_repo):
    model_dir = test_repo / "tiny_classifier" / "1"
    m = client.get_model_metadata("tiny_classifier")
    assert {"name": "logits", "datatype": "FP32", "shape": [-1, 3]} in m["outputs"]
    texts = SENTENCES + ["good food", "bad car"]
    arr = np.array([t.encode() for t in texts], dtype=np.object_)
    i = httpclient.InferInput("text", [len(texts)], "BYTES")
    i.set_data_from_numpy(arr)
    r = client.infer("tiny_classifier", [i], outputs=[httpclient.InferRequestedOutput(n) for n in ("logits", "label")])
    hs, w = hidden_states(model_dir, texts, 16)
    want = np.array([np.tanh(h[0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"]) for h in hs])
    want = want @ w["classifier.weight"].T + w["classifier.bias"]
    np.testing.assert_allclose(r.as_numpy("logits"), want, atol=1e-4)
    names = ["negative", "neutral", "positive"]
    assert [x.decode() if isinstance(x, bytes) else x for x in r.as_numpy("label")] == [names[k] for k in want.argmax(1)]
