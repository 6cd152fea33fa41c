"""FusionDesk desktop: the command line, the Gradio UI, the native window and microphone capture."""
