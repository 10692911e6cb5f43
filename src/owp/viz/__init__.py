"""Pictures: proposal overlays (objectness heat maps and plots arrive with the study tooling)."""
