"""The web app: plain handlers (handlers.py) and a Gradio page (ui.py)."""
