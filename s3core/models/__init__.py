"""Model builders and loaders: the tiny local models of the tiny world (``tiny``) and the code that loads
real models from Hugging Face folders."""
