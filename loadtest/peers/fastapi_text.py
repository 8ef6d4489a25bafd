"""The peer for the text benchmark: FastAPI + uvicorn + onnxruntime + tokenizers serving the same int8
MiniLM ONNX export over a V2-shaped JSON endpoint (BYTES `text` in, mean-pooled, L2-normalised
`embedding` out), the way a team would write it by hand.

    python fastapi_text.py MODEL_DIR PORT
"""
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tokenizers import Tokenizer

model_dir, port = sys.argv[1], int(sys.argv[2])
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.enable_padding()
tok.enable_truncation(256)
app = FastAPI()


@app.get("/v2/health/ready")
def ready():
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.json()
    texts = body["inputs"][0]["data"]
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    hidden = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    m = mask[..., None].astype(np.float32)
    emb = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return JSONResponse({"model_name": name, "outputs": [{"name": "embedding", "datatype": "FP32",
                                                          "shape": list(emb.shape), "data": emb.ravel().tolist()}]})


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
