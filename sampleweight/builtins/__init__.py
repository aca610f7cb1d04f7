"""The built-in plugins of sampleweight, declared as entry points exactly as a third party declares its own."""
