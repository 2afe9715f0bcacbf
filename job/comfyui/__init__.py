"""ComfyUI itself: installing it, running it as a child process, and talking to it."""
