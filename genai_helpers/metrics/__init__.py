"""Evaluation metrics, by kind (chapter 03 builds and cross-checks every one of them).

- :mod:`~genai_helpers.metrics.text`            perplexity, distinct-n, ExactMatch@N
- :mod:`~genai_helpers.metrics.overlap`         BLEU (= sacrebleu), ROUGE (= rouge-score), CIDEr-D (= pycocoevalcap)
- :mod:`~genai_helpers.metrics.meteor`          METEOR (= NLTK's), offline WordNet setup
- :mod:`~genai_helpers.metrics.classification`  accuracy, precision / recall / F1, confusion matrix
- :mod:`~genai_helpers.metrics.regression`      MSE, MAE, RMSE
- :mod:`~genai_helpers.metrics.ranking`         Precision@k, Recall@k, MRR, AP / mAP, nDCG@k
- :mod:`~genai_helpers.metrics.online`          two-proportion z-test and sample size for A/B tests
- :mod:`~genai_helpers.metrics.image`           Fréchet distance / FID, KID, Inception Score, k-NN precision /
                                                recall (on the book's feature network)
"""
from .classification import PRF, accuracy, confusion_matrix, precision_recall_f1  # noqa: F401
from .image import (fid_from_features, frechet_distance, gaussian_stats, inception_score,  # noqa: F401
                    kernel_inception_distance, knn_precision_recall, knn_radii)
from .meteor import load_wordnet, meteor, meteor_alignment, setup_wordnet, wordnet_status  # noqa: F401
from .online import ProportionTest, required_sample_size, two_proportion_z_test  # noqa: F401
from .overlap import BleuResult, RougeScore, bleu, cider, lcs_length, rouge, tokenize_13a, tokenize_rouge  # noqa: F401
from .ranking import (average_precision, dcg_at_k, mean_average_precision, mean_reciprocal_rank,  # noqa: F401
                      ndcg_at_k, precision_at_k, recall_at_k, reciprocal_rank)
from .regression import mae, mse, rmse  # noqa: F401
from .text import distinct_n, exact_match_at_n, perplexity  # noqa: F401

__all__ = ["PRF", "accuracy", "confusion_matrix", "precision_recall_f1", "fid_from_features", "frechet_distance",
           "gaussian_stats", "inception_score", "kernel_inception_distance", "knn_precision_recall", "knn_radii",
           "load_wordnet", "meteor",
           "meteor_alignment", "setup_wordnet", "wordnet_status", "ProportionTest", "required_sample_size",
           "two_proportion_z_test", "BleuResult", "RougeScore", "bleu", "cider", "lcs_length", "rouge",
           "tokenize_13a", "tokenize_rouge", "average_precision", "dcg_at_k", "mean_average_precision",
           "mean_reciprocal_rank", "ndcg_at_k", "precision_at_k", "recall_at_k", "reciprocal_rank", "mae", "mse",
           "rmse", "distinct_n", "exact_match_at_n", "perplexity"]
