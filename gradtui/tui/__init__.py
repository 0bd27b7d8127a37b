"""The Textual application of gradtui: build a stack, train it live, see every layer's gradients.

Everything Textual lives under this package; the headless core (``gradtui/*.py``) never imports
it. TensorFlow is imported here only in a background thread.
"""
