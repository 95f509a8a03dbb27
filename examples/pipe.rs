//! Python's "exchanging objects between processes: pipes" tutorial, and the
//! idiom that goes with it: each child writes into its own end, the parent
//! closes its copies of the write ends and reads every pipe to the end.
//!
//! ```text
//! cargo run --example pipe --features spawn
//! ```

use multiproc::{Process, RecvError, pipe};

fn main() -> multiproc::Result<()> {
    // A duplex pipe: a request goes one way, the answer comes back.
    let (parent_end, child_end) = pipe(true)?;
    let mut echo = Process::new(move || -> multiproc::Result<()> {
        let words: Vec<String> = child_end.recv()?;
        let shouted: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
        child_end.send(&shouted)?;
        Ok(())
    });
    echo.start()?;
    parent_end.send(&vec!["hello".to_string(), "pipe".to_string()])?;
    let reply: Vec<String> = parent_end.recv()?;
    println!("the child answered {reply:?}");
    assert_eq!(reply, ["HELLO", "PIPE"]);
    echo.join_ok()?;

    // One-way pipes, one per child. `start` drops the parent's copy of each
    // child's closure, and with it the write end it moved in, so the parent
    // sees the end of stream once a child is done (Python's "close the write
    // ends, then read until EOFError").
    let mut readers = Vec::new();
    let mut children = Vec::new();
    for id in 0..3u32 {
        let (reader, writer) = pipe(false)?;
        let mut child = Process::new(move || -> multiproc::Result<()> {
            for k in 0..4u32 {
                writer.send(&(id, k * k))?;
            }
            Ok(())
        });
        child.start()?;
        readers.push(reader);
        children.push(child);
    }
    let mut total = 0;
    for reader in &readers {
        loop {
            match reader.recv::<(u32, u32)>() {
                Ok((id, square)) => {
                    println!("child {id} sent {square}");
                    total += square;
                }
                Err(RecvError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    for child in &mut children {
        child.join_ok()?;
    }
    assert_eq!(total, 3 * (1 + 4 + 9));
    println!("total {total}");
    Ok(())
}
