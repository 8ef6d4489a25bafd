//! Safetensors models through candle, as users bring them from the Hugging Face ecosystem:
//! `<version>/{model.safetensors, config.json, tokenizer.json}` plus sentence-transformers' pooling
//! config. The architecture is read from `config.json` (`model_type`); the BERT family (MiniLM, BGE, E5
//! and most embedding models) serves sentence embeddings from text, tokenized on the worker thread.

mod bert;

pub use bert::BertEmbedder;
