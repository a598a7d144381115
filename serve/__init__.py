"""`cbir serve`: the search as a web page and a JSON API (FastAPI + uvicorn)."""
