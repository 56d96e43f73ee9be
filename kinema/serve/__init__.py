"""Serving: an OpenAI-compatible video API over a persistent job queue, workers, and a web UI.

config.py      ServeConfig and Limits: frozen dataclasses, one place for every knob
schemas.py     the wire format (OpenAI Videos API shapes plus kinema's extra settings)
validation.py  a request -> a checked job spec; errors name the parameter
errors.py      ApiError and the {"error": {message, type, param, code}} envelope
auth.py        bearer API keys -> the owner of a video
jobs.py        the job store (SQLAlchemy; SQLite or PostgreSQL): claims, leases, fencing
storage.py     a job's files (inputs and outputs), addressed by id only, written atomically
outputs.py     a finished clip -> MP4, thumbnail, spritesheet and quality report
worker.py      the worker loop: model loaded once, heartbeats, cancellation; text, a start
               image or a clip to extend -> the pipeline
metrics.py     Prometheus metrics read from the store (so they cover every worker)
app.py         the FastAPI routes
ui.py          the Gradio app mounted at /ui, on the same queue
server.py      `kinema serve`: uvicorn, supervised worker processes, a janitor
"""
