"""Results into tables, figures and claims: sweep analysis, the paper's tables joined with ours,
statistics over seeds, notebook 03's and 04's analyses, and one plotting style for all of them."""
