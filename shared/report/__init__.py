"""What people look at: metrics, PNG plots and self-contained HTML reports."""
