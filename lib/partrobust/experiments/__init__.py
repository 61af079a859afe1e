"""One module per notebook: its parameter schema and the steps the notebook calls."""
