"""`harness advise`: should this user fine-tune, retrieve, or both? Corpus, retrieval, RAG prompts, the arms
scored on the study's held-out questions, and their statistics. May import every layer below it: config/,
runtime/, data/, metrics/, trial/, search/, evidence/, publish/."""
