"""Image sources and the views each method contrasts."""
