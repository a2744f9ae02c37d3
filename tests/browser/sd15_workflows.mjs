// The SD1.5 templates, laid out by stages as in family_workflows.mjs (one group per stage, a Note saying what
// to change). `order` is the order the nodes are created in, so their ids stay those of the earlier layout
// (saved workflows, the e2e tests and the docs refer to the same node numbers); the Note comes last.
import { CLIP_VISION, DOG, NEG, cv, fixed, note, text } from "./family_workflows.mjs";

const CKPT = "v1-5-pruned-emaonly.safetensors";
const BANK = "sliderspace_bank_00001.safetensors";
const ckpt = () => ({ id: "ckpt", type: "CheckpointLoaderSimple", w: { ckpt_name: CKPT } });
const bank = () => ({ id: "bank", type: "SliderSpaceLoadSliderBank", w: { file: BANK } });
const load = (extra, text) => ({ title: "1. Load", nodes: [ckpt(), ...extra, note(text)] });
const latent = (batch_size = 1) => ({ id: "latent", type: "EmptyLatentImage", w: { width: 512, height: 512, batch_size } });
const ks = (id, title, w = {}) => ({ id, type: "KSampler", w: { seed: 0, ...fixed, ...w }, title });
const save = (id, filename_prefix) => ({ id, type: "SaveImage", w: { filename_prefix } });
const FILES = `Files: ${CKPT} in models/checkpoints (any SD1.5 checkpoint)`;
const FILES_BANK = `${FILES}; ${BANK} in models/sliderspace (what the discover template saves first; press R to ` +
  "list new ones).";
const FILES_CV = `${CLIP_VISION} in models/clip_vision (a CLIP ViT-L/14 vision model)`;
// One KSampler path beside the same seed on the plain model: decode both and save them.
const decodeBoth = (a, b) => [["ks", 0, "dec", "samples"], ["ckpt", 2, "dec", "vae"], ["dec", 0, "out", "images"],
  ["ks_plain", 0, "dec_plain", "samples"], ["ckpt", 2, "dec_plain", "vae"], ["dec_plain", 0, "out_plain", "images"],
  ...[a, b].flatMap(([k, pos]) => [[...pos, k, "positive"], ["neg", 0, k, "negative"], ["latent", 0, k, "latent_image"]])];
const compare = (edited, plain) => ({ title: "6. Decode and save", nodes: [{ id: "dec", type: "VAEDecode" },
  save("out", edited), { id: "dec_plain", type: "VAEDecode" }, save("out_plain", plain)] });

export const SD15_WORKFLOWS = {
  sliderspace_discover: {
    order: ["ckpt", "cv", "pos", "traj", "embed", "pca", "scree", "train", "loss", "save"],
    stages: [
      load([cv()], `SliderSpace discovery on SD1.5 (512 px).\n\n${FILES}, ${FILES_CV}.\n\nType your concept ` +
        "once, in the Prompt node: it feeds the Trajectory Sampler (its `prompts` line is then only the label " +
        "stored in the bank) and Train Sliders. Discovery cost ≈ trajectories × one KSampler run; raise " +
        "`trajectories` (paper: 1000) once it works. Train Sliders: `n_sliders`, `iterations` (paper: 3000). " +
        "The bank is saved to models/sliderspace; open sliderspace_apply or sliderspace_grid to use it."),
      { title: "2. Prompt", nodes: [text("pos", DOG, "Prompt (type the concept here)")] },
      { title: "3. Sample trajectories", nodes: [{ id: "traj", type: "SliderSpaceTrajectorySampler",
        w: { prompts: DOG, trajectories: 64, steps: 20, batch_size: 4, keep_steps: "every k-th step", keep_every: 5,
          ...fixed } }] },
      { title: "4. Embed and PCA", nodes: [{ id: "embed", type: "SliderSpaceClipEmbed", w: { batch_size: 16 } },
        { id: "pca", type: "SliderSpacePCADecompose", w: { n_components: 16, ...fixed } },
        { id: "scree", type: "PreviewImage", title: "Scree plot" }] },
      { title: "5. Train and save sliders", nodes: [
        { id: "train", type: "SliderSpaceTrainSliders", w: { n_sliders: 8, iterations: 500, ...fixed } },
        { id: "loss", type: "PreviewImage", title: "Loss curve" },
        { id: "save", type: "SliderSpaceSaveSliderBank", w: { filename_prefix: "sliderspace_bank" } }] },
    ],
    links: [["ckpt", 0, "traj", "model"], ["ckpt", 1, "traj", "clip"], ["ckpt", 1, "pos", "clip"],
      ["pos", 0, "traj", "conditioning"],
      ["traj", 0, "embed", "trajectories"], ["ckpt", 2, "embed", "vae"], ["cv", 0, "embed", "clip_vision"],
      ["embed", 0, "pca", "embeddings"], ["pca", 1, "scree", "images"],
      ["ckpt", 0, "train", "model"], ["ckpt", 2, "train", "vae"], ["cv", 0, "train", "clip_vision"],
      ["pos", 0, "train", "positive"], ["pca", 0, "train", "basis"], ["traj", 0, "train", "trajectories"],
      ["train", 1, "loss", "images"], ["train", 0, "save", "bank"]],
  },
  sliderspace_apply: {
    order: ["ckpt", "bank", "apply", "pos", "neg", "latent", "ks", "dec", "out"],
    stages: [
      load([], `Apply SliderSpace sliders on SD1.5.\n\n${FILES_BANK}\n\nMove the sliders on Apply Slider Bank ` +
        "(or type index:scale in `scales`) and name them in its label boxes; start_percent 0.2 keeps the " +
        "composition."),
      { title: "2. Sliders", nodes: [bank(),
        { id: "apply", type: "SliderSpaceApplySliderBank", w: { scales: "0:1.5", start_percent: 0.2 } }] },
      { title: "3. Prompt and latent", nodes: [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative"), latent()] },
      { title: "4. Sample", nodes: [ks("ks", undefined, { steps: 20 })] },
      { title: "5. Decode and save", nodes: [{ id: "dec", type: "VAEDecode" }, save("out", "sliderspace_apply")] },
    ],
    links: [["ckpt", 0, "apply", "model"], ["bank", 0, "apply", "bank"], ["ckpt", 1, "pos", "clip"],
      ["ckpt", 1, "neg", "clip"], ["apply", 0, "ks", "model"], ["pos", 0, "ks", "positive"],
      ["neg", 0, "ks", "negative"], ["latent", 0, "ks", "latent_image"], ["ks", 0, "dec", "samples"],
      ["ckpt", 2, "dec", "vae"], ["dec", 0, "out", "images"]],
  },
  sliderspace_sparse_diversity: {
    order: ["ckpt", "bank", "cv", "pos", "neg", "latent", "sparse", "ks_sparse", "ks_plain", "dec_sparse",
      "dec_plain", "save_sparse", "save_plain", "div_sparse", "div_plain"],
    stages: [
      load([bank(), cv()], `Random sparse sliders vs plain seeds on SD1.5.\n\n${FILES_BANK} ${FILES_CV}.\n\n` +
        "Each image of the top batch gets k random sliders of the bank (paper: k 3); the bottom batch is the " +
        "same seeds without sliders. Diversity Score compares the two (higher = more diverse)."),
      { title: "2. Prompt and latent", nodes: [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative"), latent(4)] },
      { title: "3. Random sparse sliders", nodes: [{ id: "sparse", type: "SliderSpaceRandomSparseSliders",
        w: { seed: 0, ...fixed, k: 3, batch_size: 4 } }] },
      { title: "4. Sample (sliders, plain)", nodes: [ks("ks_sparse", "KSampler (random sparse sliders)"),
        ks("ks_plain", "KSampler (plain seeds)")] },
      { title: "5. Decode and save", nodes: [{ id: "dec_sparse", type: "VAEDecode" },
        save("save_sparse", "sliderspace_sparse"), { id: "dec_plain", type: "VAEDecode" },
        save("save_plain", "sliderspace_plain")] },
      { title: "6. Diversity", nodes: [
        { id: "div_sparse", type: "SliderSpaceDiversityScore", title: "Diversity (sparse sliders)" },
        { id: "div_plain", type: "SliderSpaceDiversityScore", title: "Diversity (plain seeds)" }] },
    ],
    links: [["ckpt", 0, "sparse", "model"], ["bank", 0, "sparse", "bank"], ["ckpt", 1, "pos", "clip"],
      ["ckpt", 1, "neg", "clip"], ["sparse", 0, "ks_sparse", "model"], ["ckpt", 0, "ks_plain", "model"],
      ...["sparse", "plain"].flatMap((k) => [["pos", 0, `ks_${k}`, "positive"], ["neg", 0, `ks_${k}`, "negative"],
        ["latent", 0, `ks_${k}`, "latent_image"], [`ks_${k}`, 0, `dec_${k}`, "samples"], ["ckpt", 2, `dec_${k}`, "vae"],
        [`dec_${k}`, 0, `save_${k}`, "images"], [`dec_${k}`, 0, `div_${k}`, "images"],
        ["cv", 0, `div_${k}`, "clip_vision"]])],
  },
  sliderspace_grid: {
    order: ["ckpt", "bank", "pos", "neg", "grid", "out"],
    stages: [
      load([bank()], `Slider Grid on SD1.5: rows are sliders, columns are scales, one seed.\n\n${FILES_BANK}` +
        "\n\nChange `sliders` (e.g. 0-7 or all) and `scales`; name the rows with Label Bank (or the labels of " +
        "Apply Slider Bank's widget) before the grid."),
      { title: "2. Prompt", nodes: [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative")] },
      { title: "3. Slider Grid", nodes: [{ id: "grid", type: "SliderSpaceSliderGrid",
        w: { sliders: "0-3", scales: "-2, -1, 0, 1, 2", seed: 0, ...fixed } }] },
      { title: "4. Save", nodes: [save("out", "sliderspace_grid")] },
    ],
    links: [["ckpt", 0, "grid", "model"], ["ckpt", 2, "grid", "vae"], ["bank", 0, "grid", "bank"],
      ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"], ["pos", 0, "grid", "positive"],
      ["neg", 0, "grid", "negative"], ["grid", 0, "out", "images"]],
  },
  elrond_directions: {
    // The prompt is typed once: one String node feeds Collect, Apply (which encodes it itself) and the plain path.
    order: ["ckpt", "prompt", "pos", "neg", "latent", "collect", "decompose", "complexity", "save_dirs", "spectrum",
      "stability", "apply", "ks", "ks_plain", "dec", "dec_plain", "out", "out_plain"],
    stages: [
      load([], `ELROND on SD1.5 (512 px).\n\n${FILES}.\n\nType the prompt once, in the Prompt node (it feeds ` +
        "Collect Gradients, Apply Directions and the plain path), and the concept `word` (a whole word of the " +
        "prompt) in Collect Gradients and Apply Directions. Start with 64 images / 2000 pairs. Concept " +
        "Complexity's LID is the number of directions worth applying; try strengths 25–60, one direction at a time."),
      { title: "2. Prompt (typed once) and collect gradients", nodes: [{ id: "prompt",
        type: "PrimitiveStringMultiline", w: { value: DOG }, title: "Prompt (typed once)" },
      { id: "collect", type: "ELRONDCollectGradients", w: { word: "dog", negative: NEG, images: 64, pairs: 2000,
        seed: 0, ...fixed, steps: 20, batch_size: 4 } }] },
      { title: "3. Directions and complexity", nodes: [
        { id: "decompose", type: "ELRONDDecompose", w: { method: "PCA (LID rule)", c: 2.5, seed: 0, ...fixed } },
        { id: "spectrum", type: "PreviewImage", title: "Spectrum (kept directions)" },
        { id: "complexity", type: "ELRONDConceptComplexity", w: { c: 2.5, seed: 0, ...fixed } },
        { id: "stability", type: "PreviewImage", title: "LID vs number of gradients" },
        { id: "save_dirs", type: "ELRONDSaveDirections", w: { filename_prefix: "elrond_dog" } }] },
      { title: "4. Apply a direction", nodes: [text("pos", "", "Positive"), text("neg", NEG, "Negative"),
        { id: "apply", type: "ELRONDApplyDirections", w: { word: "dog", strengths: "0:30" } }] },
      { title: "5. Sample (edited, plain)", nodes: [latent(), ks("ks", "KSampler (ELROND direction 0)", { steps: 20 }),
        ks("ks_plain", "KSampler (plain prompt)", { steps: 20 })] },
      compare("elrond_directions", "elrond_plain"),
    ],
    links: [["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["prompt", 0, "collect", "prompt"], ["prompt", 0, "apply", "prompt"], ["prompt", 0, "pos", "text"],
      ["ckpt", 0, "collect", "model"], ["ckpt", 1, "collect", "clip"],
      ["collect", 0, "decompose", "gradients"], ["collect", 0, "complexity", "gradients"],
      ["decompose", 0, "save_dirs", "directions"], ["decompose", 1, "spectrum", "images"],
      ["complexity", 2, "stability", "images"], ["ckpt", 1, "apply", "clip"], ["decompose", 0, "apply", "directions"],
      ["ckpt", 0, "ks", "model"], ["ckpt", 0, "ks_plain", "model"],
      ...decodeBoth(["ks", ["apply", 0]], ["ks_plain", ["pos", 0]])],
  },
  sae_concepts: {
    order: ["ckpt", "pos", "neg", "latent", "collect", "train", "plot", "save_sae", "map", "maps", "steer", "ks",
      "ks_plain", "dec", "dec_plain", "out", "out_plain"],
    stages: [
      load([], `SAE concepts on SD1.5 (512 px), at middle_block.1.\n\n${FILES}.\n\nCollect more samples and ` +
        "train more epochs for cleaner features (1 epoch here is a quick first look). Pick feature ids from the " +
        "concept maps and put them in SAE Steer's `features` (id:strength); window 0–0.4 steers composition, " +
        "0.4–0.8 style. SAE List Blocks prints the other blocks."),
      { title: "2. Prompt and collect activations", nodes: [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative"),
        { id: "collect", type: "SliderSpaceSAECollectActivations", w: { block: "middle_block.1", capture: "cond",
          samples: 32, seed: 0, ...fixed, steps: 20, spatial_subsample: 64, name: "dog_middle" } }] },
      { title: "3. Train the SAE", nodes: [
        { id: "train", type: "SliderSpaceSAETrain", w: { width: 0, k: 10, epochs: 1, seed: 0, ...fixed } },
        { id: "plot", type: "PreviewImage", title: "SAE loss and dead latents" },
        { id: "save_sae", type: "SliderSpaceSaveSAE", w: { filename_prefix: "sae_dog_middle" } }] },
      { title: "4. Concept maps and steer", nodes: [
        { id: "map", type: "SliderSpaceSAEConceptMap", w: { seed: 1, ...fixed, steps: 20, top: 8 } },
        { id: "maps", type: "PreviewImage", title: "Concept maps (feature ids in the titles)" },
        { id: "steer", type: "SliderSpaceSAESteer", w: { features: "0:8", mode: "global", start_percent: 0.0,
          end_percent: 0.4 }, title: "SAE Steer (feature ids from the concept map)" }] },
      { title: "5. Sample (steered, plain)", nodes: [latent(), ks("ks", "KSampler (SAE steered)", { steps: 20 }),
        ks("ks_plain", "KSampler (plain model)", { steps: 20 })] },
      compare("sae_steered", "sae_plain"),
    ],
    links: [["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["ckpt", 0, "collect", "model"], ["pos", 0, "collect", "positive"], ["neg", 0, "collect", "negative"],
      ["collect", 0, "train", "activations"], ["train", 1, "plot", "images"], ["train", 0, "save_sae", "sae"],
      ["ckpt", 0, "map", "model"], ["train", 0, "map", "sae"], ["pos", 0, "map", "positive"],
      ["neg", 0, "map", "negative"], ["ckpt", 2, "map", "vae"], ["map", 0, "maps", "images"],
      ["ckpt", 0, "steer", "model"], ["train", 0, "steer", "sae"], ["steer", 0, "ks", "model"],
      ["ckpt", 0, "ks_plain", "model"], ...decodeBoth(["ks", ["pos", 0]], ["ks_plain", ["pos", 0]])],
  },
};
