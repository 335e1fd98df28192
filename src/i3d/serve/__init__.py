"""``i3d serve``: the classifier as an HTTP service with a web page (FastAPI + uvicorn, ``pip install i3d[serve]``)."""
