"""The data half of the pretraining pipeline: corpus → cleaning → split → tokenizer → batches."""
