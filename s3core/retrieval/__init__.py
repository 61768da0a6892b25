"""Retrieval: dense (encoder + FAISS / torch) and BM25 (pyserini) indexes, the retrieval server and client.

DESIGN.md sections 2 ("Dense retrieval", "Retrieval HTTP API") and 3 ("Serving parts").
"""
