// MathJax 3, shipped with the site (docs/hooks.py copies it from the django-static-mathjax package):
// typeset only what pymdownx.arithmatex marked, \( \) inline and \[ \] displayed.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
