"""Stage 5, train: single-task pre-training, multi-label BCE (:mod:`.train`), and joint finetuning
of a merged network where shared weights get the task-averaged gradient (:mod:`.finetune`)."""
