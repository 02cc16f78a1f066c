"""Tables and plots of evaluations and training curves."""
