"""An inbox item's life: its source, its outbox, its status, and the drain of pending items."""
