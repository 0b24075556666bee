"""vlp_course: the model code, data and exercise checks behind the vision-language pretraining course."""

__version__ = "0.1.0"
