"""What outreach does, over the store and the mail seams: each module one service."""
