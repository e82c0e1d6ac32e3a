// placeholder until the history endpoint lands
