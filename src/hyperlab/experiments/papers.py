"""The papers hyperlab reproduces, with their arXiv ids."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONTINUAL", "GENERATING", "INFINITE_WIDTH", "MODULARITY", "Paper"]


@dataclass(frozen=True)
class Paper:
    """A paper: title, authors, venue and arXiv id (printed as one citation line)."""

    title: str
    authors: str
    venue: str
    arxiv: str

    def __str__(self) -> str:
        return f"{self.title} ({self.authors}, {self.venue}, arXiv:{self.arxiv})"


MODULARITY = Paper("On the Modularity of Hypernetworks", "Galanti & Wolf", "NeurIPS 2020",
                   "2002.10006")  # fmt: skip
INFINITE_WIDTH = Paper("On Infinite-Width Hypernetworks", "Littwin, Galanti, Wolf & Yang",
                       "NeurIPS 2020", "2003.12193")  # fmt: skip
GENERATING = Paper("Generating Neural Networks with Neural Networks", "Deutsch", "arXiv 2018",
                   "1801.01952")  # fmt: skip
CONTINUAL = Paper("Continual learning with hypernetworks",
                  "von Oswald, Henning, Grewe & Sacramento", "ICLR 2020", "1906.00695")  # fmt: skip
