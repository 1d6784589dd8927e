"""The detection engine: plain Python, no widgets (a test enforces that nothing under
``msda_widgets.engine`` imports ipywidgets or bqplot)."""
