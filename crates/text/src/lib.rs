//! Text in, token ids out, and embeddings pooled back to one vector per text: what every text model
//! needs whatever runs it (candle or ONNX Runtime). Reads the sentence-transformers files beside the
//! weights (`1_Pooling/config.json`, `modules.json`, `sentence_bert_config.json`).

mod encoder;
mod pooling;

pub use encoder::{Encoded, TextEncoder};
pub use pooling::{Pooling, SentenceConfig, pool};
pub use switchyard_backend::{TextOptions, Truncation};
