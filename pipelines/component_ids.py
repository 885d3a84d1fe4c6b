"""The ids of the pipeline's own components: in the pipeline definition
(pipelines/pipeline.py), in ML Metadata, in the run summary's results and in the
Kubeflow spec (the federated step's container). Import them; no TFX needed."""

EXAMPLE_GEN_ID = "CsvExampleGen"
GAN_TRAINER_ID = "GanTrainer"
CLASSIFIER_TRAINER_ID = "DpClassifierTrainer"
TWIN_TRAINER_ID = "NonPrivateTwinTrainer"
EVALUATOR_ID = "Evaluator"
REPORT_ID = "EvaluationReport"
FEDERATED_STEP_ID = "FederatedStep"
RELEASE_ID = "ReleasePusher"
