"""The site's radiomics engine: pyradiomics' own feature code, reorganized for speed.

The identity contract: every value `features.extract_case` returns equals (==) what
`RadiomicsFeatureExtractor.execute` gives for the same image, region and settings. Each
class here overrides only same-named pyradiomics methods (`FastGLCM`, `FastFirstOrder`),
and each override has an `==` test against its parent in tests/common/radiomics/. The one
documented exception (LoG on a cropped working volume without resampling, equal to float32
rounding) is in docs/extraction.md.
"""
