//! Python's "customized managers" tutorial: a user type registered with a
//! manager lives in the server process; children call its methods through a
//! typed proxy, and the built-in dict and lock are there too.
//!
//! ```text
//! cargo run --example manager_custom --features manager
//! ```

use multiproc::Process;
use multiproc::manager::Manager;
use serde::{Deserialize, Serialize};

/// A tally of words, held by the manager's server process.
#[derive(Serialize, Deserialize, Default)]
struct WordCount {
    words: std::collections::BTreeMap<String, u64>,
}

impl WordCount {
    fn add(&mut self, text: String) -> u64 {
        let mut added = 0;
        for w in text.split_whitespace() {
            *self.words.entry(w.to_lowercase()).or_default() += 1;
            added += 1;
        }
        added
    }
    fn count(&self, word: String) -> u64 {
        self.words.get(&word).copied().unwrap_or(0)
    }
    fn top(&self, n: u64) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self.words.iter().map(|(w, c)| (w.clone(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n as usize);
        all
    }
}

multiproc::manager_type! {
    /// The proxy through which other processes use a [`WordCount`].
    pub proxy WordCountProxy for WordCount as "WordCount" {
        fn add(&mut self, text: String) -> u64;
        fn count(&self, word: String) -> u64;
        fn top(&self, n: u64) -> Vec<(String, u64)>;
    }
}

fn main() -> multiproc::Result<()> {
    let m = Manager::builder().register::<WordCount>().start()?;
    let counts: WordCountProxy = m.create(&WordCount::default())?;
    let lines_done = m.dict::<String, u64>()?;

    let texts = [
        "the quick brown fox",
        "jumps over the lazy dog",
        "the dog barks",
        "a fox runs",
    ];
    let mut children: Vec<Process> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let (counts, lines_done) = (counts.clone(), lines_done.clone());
            let text = text.to_string();
            Process::new(move || -> multiproc::Result<()> {
                let n = counts.add(text)?;
                lines_done.insert(&format!("child-{i}"), &n)?;
                Ok(())
            })
        })
        .collect();
    for c in &mut children {
        c.start()?;
    }
    for c in &mut children {
        c.join_ok()?;
    }
    println!("words per child: {:?}", lines_done.items()?);
    println!("top three: {:?}", counts.top(3)?);
    assert_eq!(counts.count("the".into())?, 3);
    assert_eq!(lines_done.len()?, texts.len());
    Ok(())
}
