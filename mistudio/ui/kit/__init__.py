"""The shared UI kit every tab builds with: colours (``palette``), hint labels and status chips
(``labels``), cards (``cards``), and the one way to run a short call off the GUI thread
(``background``). Tabs import from here, never from each other."""
